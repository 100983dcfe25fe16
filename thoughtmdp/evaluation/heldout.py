"""Held-out pass rates: one rollout per problem through the evaluation engine, and samples.

:func:`heldout_pass_rate` rolls every problem out once with an
:class:`~thoughtmdp.evaluation.engine.EvalEngine` (greedy under the default settings), as
training does, and counts passes and well-formed chains (every thought closed by
``</thought>``, the last one holding the final answer). Given a second, sampling engine it
also draws that engine's ``samples`` rollouts per problem, for sampled pass@1
(:class:`SampledResult`). :func:`evaluate_versions` does it for the base model and a run's
adapter versions in turn.

Sample ``j`` of a problem is seeded by
:meth:`~thoughtmdp.evaluation.engine.EvalEngine.request_seed` from the engine's
``sampling_seed``, the problem's id and ``j`` only, never from the adapter version or the
run: every version (and every run with the same sampling settings) is evaluated on the same
draws, so their sampled pass rates compare paired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thoughtmdp.episodes.metrics import PASS_REWARD
from thoughtmdp.evaluation.engine import EvalEngine, use_adapter
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.runs.stats import sampled_pass_at_1, wilson_interval
from thoughtmdp.types import Problem, Trajectory


@dataclass(frozen=True)
class SampledResult:
    """Sampled rollouts of one policy: ``samples`` per problem at one temperature.

    Attributes:
        rewards: Per problem (in the order of the greedy result's), each sample's reward.
        temperature: The sampling temperature.
    """

    rewards: tuple[tuple[float, ...], ...]
    temperature: float

    @property
    def samples(self) -> int:
        """Samples per problem."""
        return len(self.rewards[0]) if self.rewards else 0

    @property
    def passed(self) -> list[list[int]]:
        """Per problem, 1 for each sample that passed (reward of at least ``PASS_REWARD``)."""
        return [[int(r >= PASS_REWARD) for r in problem] for problem in self.rewards]

    def record(self) -> dict[str, Any]:
        """``samples``, ``temperature``, the ``passed`` matrix, ``pass_at_1`` and its ``se``."""
        passed = self.passed
        pass_at_1, se = sampled_pass_at_1(passed)
        return {
            "samples": self.samples,
            "temperature": self.temperature,
            "passed": passed,
            "pass_at_1": pass_at_1,
            "se": se,
        }


@dataclass(frozen=True)
class HeldoutResult:
    """One policy on one set of problems.

    Attributes:
        problem_ids: The problems, in order.
        rewards: Reward of each problem's rollout.
        well_formed: Whether each rollout was a well-formed chain.
        seconds: Wall-clock time of the evaluation (greedy and sampled rollouts).
        sampled: The sampled rollouts, when they were asked for.
    """

    problem_ids: tuple[str, ...]
    rewards: tuple[float, ...]
    well_formed: tuple[bool, ...]
    seconds: float = 0.0
    sampled: SampledResult | None = None

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
        """Plain numbers for reports: problems, pass rate with its 95 % interval, format.

        With sampled rollouts, ``sampled`` holds their ``samples``, ``temperature``,
        ``pass_at_1`` and ``se``.
        """
        low, high = wilson_interval(int(self.passed.sum()), len(self.rewards))
        out = {
            "problems": len(self.rewards),
            "pass_rate": self.pass_rate,
            "pass_rate_ci95": [low, high],
            "well_formed_rate": self.well_formed_rate,
            "seconds": round(self.seconds, 2),
        }
        if self.sampled is not None:
            out["sampled"] = {k: v for k, v in self.sampled.record().items() if k != "passed"}
        return out


async def heldout_pass_rate(
    engine: EvalEngine, problems: Sequence[Problem], sampled: EvalEngine | None = None
) -> HeldoutResult:
    """Roll each problem out once (its first sample) and score it; sample it too if asked.

    The two engines' rollouts run together (give them the same slots to batch them as one).

    Args:
        engine: The backend, task and settings (the problems' split among them).
        problems: The problems.
        sampled: An engine on the same backend and task whose ``settings.samples`` rollouts
            per problem are drawn as well (``None``: none).

    Returns:
        Rewards and format of every rollout, in the order of ``problems``.
    """
    started = time.perf_counter()
    greedy_jobs = engine.run([(problem, 0) for problem in problems])
    sampled_result = None
    if sampled is None:
        done = await greedy_jobs
    else:
        done, draws = await asyncio.gather(greedy_jobs, sampled.run(sampled.jobs(problems)))
        k = sampled.settings.samples
        rewards = [r.trajectory.reward for r in draws]
        sampled_result = SampledResult(
            tuple(tuple(rewards[i * k : (i + 1) * k]) for i in range(len(problems))),
            sampled.settings.temperature,
        )
    delimiter = delimiter_id(getattr(engine.backend, "tokenizer", None))
    return HeldoutResult(
        tuple(problem.id for problem in problems),
        tuple(r.trajectory.reward for r in done),
        tuple(is_well_formed(engine.task, r.trajectory, delimiter) for r in done),
        time.perf_counter() - started,
        sampled_result,
    )


async def evaluate_versions(
    engine: EvalEngine,
    problems: Sequence[Problem],
    adapters: Sequence[tuple[int, Path | None]],
    on_result: Callable[[int, HeldoutResult], None] | None = None,
    sampled: EvalEngine | None = None,
) -> dict[int, HeldoutResult]:
    """Held-out pass rate of the base model and of adapter versions, in order.

    Args:
        engine: The engine; its backend loads each adapter in turn.
        problems: The held-out problems.
        adapters: ``(version, adapter folder)`` pairs in increasing version order; version 0
            with ``None`` is the base model (it must come first: an adapter cannot be
            unloaded).
        on_result: Called with each version's result as soon as it is known.
        sampled: A sampling engine on the same backend, for sampled pass@1 (see
            :func:`heldout_pass_rate`); its seeds are the same at every version.

    Returns:
        The result of every version.
    """
    results = {}
    for version, folder in adapters:
        await use_adapter(engine.backend, folder, version)
        results[version] = await heldout_pass_rate(engine, problems, sampled)
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
