"""Self-localisation: asking the policy which thought of its failed chain went wrong first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from thoughtmdp.mdp.boxed import last_boxed

# The problem and the chain come first and the format rule last: with 20 long thoughts, a rule
# stated before the chain sits thousands of tokens away from where the model starts answering.
LOCALIZER_TEMPLATE = (
    "Here is a problem and a solution you wrote for it, one numbered step per line.\n\n"
    "Problem: {question}\n\n"
    "Solution:\n{steps}\n\n"
    "This solution reaches a wrong final answer, so it holds at least one mistake, and your "
    "job is to find where that mistake started. Mistakes often stay hidden for a while: a "
    "misunderstood condition or a claim made without support may only give a visibly wrong "
    "number several steps later. Count a step as wrong if what it states does not follow from "
    "the problem and the correct steps before it. Point to where the trouble began, not to "
    "where it became visible, and do not solve the problem again.\n\n"
    "Answer format:\n"
    "- Choose one step number between 1 and {num_steps}.\n"
    "- If several steps are wrong, choose the earliest.\n"
    "- End with a last line that holds only \\boxed{{N}}: N is the number of the first step "
    "that cannot be justified, a step index and NOT the answer to the problem. Write nothing "
    "after that line.\n"
)
"""Default localiser prompt; fields ``{question}``, ``{steps}`` and ``{num_steps}``.

It follows the order of the paper's localisation prompt (Appendix 11): the problem and the
numbered chain, then what counts as the first error, then the rules, ending with the
mandatory final line that says the boxed number is a step index and not the problem's answer.
"""

STEP_NUMBER = re.compile(r"^\s*(step\s*)?(\d+)\s*\.?\s*$", re.IGNORECASE)

ParseResult = tuple[int | None, Literal["ok", "unparsable", "out_of_range", "ambiguous"]]


def render_localizer_prompt(
    question: str, thoughts: Sequence[str], template: str = LOCALIZER_TEMPLATE
) -> str:
    r"""The localiser prompt for a failed chain, its thoughts shown as ``Step k: ...``.

    >>> print(render_localizer_prompt("2+2", ["2+2=5", r"\boxed{5}"], "{steps}"))
    Step 1: 2+2=5
    Step 2: \boxed{5}
    >>> render_localizer_prompt("2+2", ["2+2=5"]).splitlines()[-1].endswith("after that line.")
    True
    """
    steps = "\n".join(f"Step {k}: {text.strip()}" for k, text in enumerate(thoughts, start=1))
    return template.format(question=question, steps=steps, num_steps=len(thoughts))


def parse_step_index(text: str, num_steps: int, answers: Iterable[str] = ()) -> ParseResult:
    r"""Read the step number from the last ``\boxed{...}`` of a localiser answer.

    Accepts ``\boxed{3}``, ``\boxed{ 3 }``, ``\boxed{Step 3}`` and ``\boxed{3.}``.

    A bare boxed number equal to one of ``answers`` (the chain's own final answer, the
    reference answer) is ambiguous: the model may have boxed the problem's answer instead of
    a step index. It counts as a step only when the answer names the step in words too:
    ``\boxed{Step 3}``, or "step 3" written outside the box.

    Args:
        text: The localiser's answer.
        num_steps: ``H_s``, the thoughts of the chain it was shown.
        answers: Final answers the boxed number must not be mistaken for.

    Returns:
        ``(index, "ok")`` for an index in ``1..num_steps``; ``(None, "out_of_range")`` for a
        number outside it; ``(None, "ambiguous")`` for a bare number equal to one of
        ``answers``; ``(None, "unparsable")`` when there is no boxed number.

    >>> parse_step_index(r"The slip is in step 2. \boxed{2}", 4)
    (2, 'ok')
    >>> parse_step_index(r"\boxed{7}", 4)
    (None, 'out_of_range')
    >>> parse_step_index("step 2", 4)
    (None, 'unparsable')
    >>> parse_step_index(r"\boxed{3}", 4, answers=["3"])
    (None, 'ambiguous')
    >>> parse_step_index(r"Step 3 is the first wrong one. \boxed{3}", 4, answers=["3"])
    (3, 'ok')
    """
    boxed = last_boxed(text)
    match = STEP_NUMBER.match(boxed) if boxed is not None else None
    if match is None:
        return None, "unparsable"
    index = int(match.group(2))
    if not 1 <= index <= num_steps:
        return None, "out_of_range"
    if any(_as_number(answer) == index for answer in answers):
        outside = text[: text.rfind(f"\\boxed{{{boxed}}}")]
        named = match.group(1) is not None or re.search(
            rf"\bstep\s*{index}\b", outside, re.IGNORECASE
        )
        if not named:
            return None, "ambiguous"
    return index, "ok"


def _as_number(answer: str) -> float | None:
    """``answer`` as a number (``"3"``, ``" $3.0$ "``, ``"1,000"``), or ``None``."""
    try:
        return float(answer.strip().strip("$").replace(",", ""))
    except ValueError:
        return None
