"""HardStepChain: long chains of easy steps with one hard step, where credit assignment decides."""

from __future__ import annotations

from typing import Any

import numpy as np

from thoughtmdp.episodes.localization import LOCALIZER_TEMPLATE
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE

from .arith_chain import ArithChainTask

HARD_OPERATOR = "*"


class HardStepChainTask(ArithChainTask):
    """Long chains of small additions and subtractions with one multiplication at a set step.

    A problem such as ``7+2-1*6+3-4+1+2`` (left to right, one operation per thought) has
    ``num_steps`` operations. All but one add or subtract a small operand from
    ``operand_range`` and keep the running value at 1 or more; step ``hard_step`` multiplies
    by a digit from ``hard_operand_range``. A mistake anywhere propagates to the boxed answer.

    Why it isolates credit assignment: a policy that has learnt the easy steps well fails
    mostly at the multiplication, so a failed chain's first mistake sits at one known step
    (``first_error_step`` names it). A chain from the prompt only tests that step when every
    easy step before it came out right, with probability ``p = (1 - e) ** (hard_step - 1)``
    for a per-step slip rate ``e``. Moving ``hard_step`` later lowers ``p`` without changing
    what has to be learnt: this is the knob of Theorem 1, where a reset to the clean prefix
    before the hard step saves samples in proportion to ``1 / p``, while GRPO's groups from
    the prompt spend most of their reward differences on slips elsewhere.

    Args:
        num_steps: Operations per problem.
        hard_step: The 1-based step that multiplies; ``None`` draws it uniformly per problem
            (a model trained on such problems serves every position).
        operand_range: Inclusive range of the easy steps' operands.
        hard_operand_range: Inclusive range of the multiplier.
        start_range: Inclusive range of the first operand.
        seed: Seed of the generator.
        size: Number of train problems.
        test_size: Number of test problems.
        prompt_template: Rollout template with a ``{question}`` field.
        localizer_template: Self-localisation template (``{question}``, ``{steps}``,
            ``{num_steps}``).
    """

    name = "hard_step_chain"

    def __init__(
        self,
        num_steps: int = 8,
        hard_step: int | None = 6,
        operand_range: tuple[int, int] = (1, 4),
        hard_operand_range: tuple[int, int] = (3, 9),
        start_range: tuple[int, int] = (1, 9),
        seed: int = 0,
        size: int = 10_000,
        test_size: int = 1_000,
        prompt_template: str = ROLLOUT_TEMPLATE,
        localizer_template: str = LOCALIZER_TEMPLATE,
    ) -> None:
        super().__init__(
            num_steps,
            operand_range,
            "+-" + HARD_OPERATOR,
            seed,
            size,
            test_size,
            prompt_template,
            localizer_template,
        )
        if hard_step is not None and not 1 <= hard_step <= num_steps:
            raise ValueError(f"hard_step must be in 1..num_steps ({num_steps}), got {hard_step}")
        for name, (low, high) in (
            ("hard_operand_range", hard_operand_range),
            ("start_range", start_range),
        ):
            if not 0 <= low <= high:
                raise ValueError(f"{name} must satisfy 0 <= low <= high, got {(low, high)}")
        self.hard_step = hard_step
        self.hard_operand_range = (int(hard_operand_range[0]), int(hard_operand_range[1]))
        self.start_range = (int(start_range[0]), int(start_range[1]))

    def draw_chain(self, rng: np.random.Generator) -> tuple[list[int], list[str], dict[str, Any]]:
        """Easy steps that keep the value at 1 or more, and the multiplication at the hard step."""
        hard = self.hard_step or int(rng.integers(1, self.num_steps + 1))
        value = int(rng.integers(self.start_range[0], self.start_range[1] + 1))
        operands, ops = [value], []
        for step in range(1, self.num_steps + 1):
            if step == hard:
                operand, op = _draw(rng, self.hard_operand_range), HARD_OPERATOR
                value *= operand
            else:
                operand = _draw(rng, self.operand_range)
                op = "-" if rng.random() < 0.5 and value > operand else "+"
                value = value - operand if op == "-" else value + operand
            operands.append(operand)
            ops.append(op)
        return operands, ops, {"hard_step": hard}


def _draw(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))
