"""Self-localisation: asking the policy which thought of its failed chain went wrong first."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from thoughtmdp.mdp.boxed import last_boxed

LOCALIZER_TEMPLATE = (
    "Below is a problem and a chain of reasoning steps you wrote for it. The chain ends in a "
    "wrong final answer, so some step is wrong.\n"
    "Name the step where the reasoning first went wrong: the step whose mistake caused the "
    "failure, which can come several steps before the wrong result shows. A step is wrong when "
    "its claims do not follow from the problem and the earlier correct steps. Misreading the "
    "problem, assuming something unjustified and faulty logic all count.\n"
    "Do not solve the problem again. Pick exactly one step number from 1 to {num_steps} and "
    "end your reply with it as \\boxed{{N}}, with nothing after it.\n\n"
    "Problem: {question}\n\n"
    "Your reasoning:\n{steps}\n"
)
"""Default localiser prompt; fields ``{question}``, ``{steps}`` and ``{num_steps}``."""

STEP_NUMBER = re.compile(r"^\s*(?:step\s*)?(\d+)\s*\.?\s*$", re.IGNORECASE)

ParseResult = tuple[int | None, Literal["ok", "unparsable", "out_of_range"]]


def render_localizer_prompt(
    question: str, thoughts: Sequence[str], template: str = LOCALIZER_TEMPLATE
) -> str:
    r"""The localiser prompt for a failed chain, its thoughts shown as ``Step k: ...``.

    >>> print(render_localizer_prompt("2+2", ["2+2=5", r"\boxed{5}"], "{steps}"))
    Step 1: 2+2=5
    Step 2: \boxed{5}
    """
    steps = "\n".join(f"Step {k}: {text.strip()}" for k, text in enumerate(thoughts, start=1))
    return template.format(question=question, steps=steps, num_steps=len(thoughts))


def parse_step_index(text: str, num_steps: int) -> ParseResult:
    r"""Read the step number from the last ``\boxed{...}`` of a localiser answer.

    Accepts ``\boxed{3}``, ``\boxed{ 3 }``, ``\boxed{Step 3}`` and ``\boxed{3.}``.

    Returns:
        ``(index, "ok")`` for an index in ``1..num_steps``; ``(None, "out_of_range")`` for a
        number outside it; ``(None, "unparsable")`` when there is no boxed number.

    >>> parse_step_index(r"The slip is in step 2. \boxed{2}", 4)
    (2, 'ok')
    >>> parse_step_index(r"\boxed{7}", 4)
    (None, 'out_of_range')
    >>> parse_step_index("step 2", 4)
    (None, 'unparsable')
    """
    boxed = last_boxed(text)
    match = STEP_NUMBER.match(boxed) if boxed is not None else None
    if match is None:
        return None, "unparsable"
    index = int(match.group(1))
    if not 1 <= index <= num_steps:
        return None, "out_of_range"
    return index, "ok"
