"""Held-out pass rates: one rollout per problem through the evaluation engine.

:func:`heldout_pass_rate` rolls every problem out once with an
:class:`~thoughtmdp.evaluation.engine.EvalEngine` (greedy under the default settings), as
training does, and counts passes and well-formed chains (every thought closed by
``</thought>``, the last one holding the final answer). :func:`evaluate_versions` does it for
the base model and a run's adapter versions in turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thoughtmdp.evaluation.engine import EvalEngine, use_adapter
from thoughtmdp.evaluation.records import PASS_REWARD
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.runs.stats import wilson_interval
from thoughtmdp.types import Problem, Trajectory


@dataclass(frozen=True)
class HeldoutResult:
    """One policy on one set of problems.

    Attributes:
        problem_ids: The problems, in order.
        rewards: Reward of each problem's rollout.
        well_formed: Whether each rollout was a well-formed chain.
        seconds: Wall-clock time of the evaluation.
    """

    problem_ids: tuple[str, ...]
    rewards: tuple[float, ...]
    well_formed: tuple[bool, ...]
    seconds: float = 0.0

    @property
    def passed(self) -> np.ndarray:
        """Whether each rollout passed (reward of at least ``PASS_REWARD``)."""
        return np.asarray(self.rewards) >= PASS_REWARD

    @property
    def pass_rate(self) -> float:
        """Share of problems passed."""
        return float(self.passed.mean()) if self.rewards else 0.0

    @property
    def well_formed_rate(self) -> float:
        """Share of well-formed chains."""
        return float(np.mean(self.well_formed)) if self.well_formed else 0.0

    def summary(self) -> dict[str, Any]:
        """Plain numbers for reports: problems, pass rate with its 95 % interval, format."""
        low, high = wilson_interval(int(self.passed.sum()), len(self.rewards))
        return {
            "problems": len(self.rewards),
            "pass_rate": self.pass_rate,
            "pass_rate_ci95": [low, high],
            "well_formed_rate": self.well_formed_rate,
            "seconds": round(self.seconds, 2),
        }


async def heldout_pass_rate(engine: EvalEngine, problems: Sequence[Problem]) -> HeldoutResult:
    """Roll each problem out once (its first sample) and score it.

    Args:
        engine: The backend, task and settings (the problems' split among them).
        problems: The problems.

    Returns:
        Rewards and format of every rollout, in the order of ``problems``.
    """
    started = time.perf_counter()
    done = await engine.run([(problem, 0) for problem in problems])
    delimiter = delimiter_id(getattr(engine.backend, "tokenizer", None))
    return HeldoutResult(
        tuple(problem.id for problem in problems),
        tuple(r.trajectory.reward for r in done),
        tuple(is_well_formed(engine.task, r.trajectory, delimiter) for r in done),
        time.perf_counter() - started,
    )


async def evaluate_versions(
    engine: EvalEngine,
    problems: Sequence[Problem],
    adapters: Sequence[tuple[int, Path | None]],
    on_result: Callable[[int, HeldoutResult], None] | None = None,
) -> dict[int, HeldoutResult]:
    """Held-out pass rate of the base model and of adapter versions, in order.

    Args:
        engine: The engine; its backend loads each adapter in turn.
        problems: The held-out problems.
        adapters: ``(version, adapter folder)`` pairs in increasing version order; version 0
            with ``None`` is the base model (it must come first: an adapter cannot be
            unloaded).
        on_result: Called with each version's result as soon as it is known.

    Returns:
        The result of every version.
    """
    results = {}
    for version, folder in adapters:
        await use_adapter(engine.backend, folder, version)
        results[version] = await heldout_pass_rate(engine, problems)
        if on_result is not None:
            on_result(version, results[version])
    return results


def is_well_formed(task: VerifiableTask, trajectory: Trajectory, delimiter_id: int | None) -> bool:
    """Every thought ends with the delimiter token and the last one is final."""
    thoughts = trajectory.all_thoughts
    if not thoughts or not trajectory.terminated or not task.is_final(thoughts[-1].text):
        return False
    if delimiter_id is None:
        return True
    return all(t.token_ids is not None and t.token_ids[-1:] == (delimiter_id,) for t in thoughts)


def delimiter_id(tokenizer: Any) -> int | None:
    """The delimiter's token id, when the tokenizer has it as a single token."""
    if tokenizer is None:
        return None
    ids = tokenizer.encode(THOUGHT_DELIMITER, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None
