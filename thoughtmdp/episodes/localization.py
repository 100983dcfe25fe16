"""Self-localisation: asking the policy which thought of its failed chain went wrong first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from thoughtmdp.mdp.boxed import last_boxed

# The problem and the chain come first and the format rule last: with 20 long thoughts, a rule
# stated before the chain sits thousands of tokens away from where the model starts answering.
LOCALIZER_TEMPLATE = (
    "You will look back at a solution you wrote and find the first step in it that went "
    "wrong.\n\n"
    "Problem: {question}\n\n"
    "Your solution, one step per line:\n{steps}\n\n"
    "The final answer of this solution is wrong, so at least one of its steps is wrong. Look "
    "for the step where the mistake began, not the later step where the wrong result finally "
    "shows: a misread problem, an assumption with nothing behind it or a faulty inference can "
    "look harmless for several steps. A step is wrong when its claims cannot be justified from "
    "the problem and the earlier steps that hold. Do not work the problem out again; your only "
    "job is to name that step.\n\n"
    "Rules:\n"
    "- Pick exactly one step number, from 1 to {num_steps}.\n"
    "- Pick the earliest step you cannot justify.\n"
    "- Your reply must end with a final line holding only \\boxed{{N}}, where N is a step "
    "index (the number of the first step that cannot be justified), NOT the answer to the "
    "problem. Write nothing after that line.\n"
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
