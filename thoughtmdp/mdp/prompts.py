"""The rollout prompt that turns a question into a Thought MDP start state."""

from __future__ import annotations

THOUGHT_DELIMITER = "</thought>"

ROLLOUT_TEMPLATE = (
    "Work through the problem below in small steps, writing exactly one step per thought.\n"
    "A thought is one self-contained move (a calculation, an observation or a deduction) "
    "that builds on the earlier thoughts and brings the solution closer; skip filler and "
    "do not restate the problem.\n"
    "Finish every thought with </thought>.\n"
    "In the thought that reaches the result, write the final answer as \\boxed{{...}}.\n\n"
    "Q: {question}\n"
)
"""Default rollout prompt; ``{question}`` is replaced by the problem statement."""


def render_prompt(question: str, template: str = ROLLOUT_TEMPLATE) -> str:
    r"""Fill a rollout template with a question.

    Args:
        question: The problem statement.
        template: A ``str.format`` template with a ``{question}`` field.

    Returns:
        The prompt text the model continues with its first thought.

    >>> render_prompt("1+2", "Q: {question}!")
    'Q: 1+2!'
    """
    return template.format(question=question)
