"""Held-out pass rates: greedy thought-level rollouts on a task's test problems.

:func:`heldout_pass_rate` rolls every problem out once through the Thought MDP, as training
does, and counts passes and well-formed chains (every thought closed by ``</thought>``, the
last one holding the final answer). :func:`paired_gain` compares two evaluations of the same
problems, and :func:`warm_start_report` measures a freshly built embedded policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.episodes.rollout import rollout
from thoughtmdp.evaluation.records import PASS_REWARD
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.runs.stats import wilson_interval
from thoughtmdp.types import Trajectory

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=256)
WARM_START_TOKENS = 32  # per thought, far above an ArithChain step
LOCALIZER_TOKENS = 128  # a localiser answer redoes up to every step


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


async def heldout_pass_rate(
    task: VerifiableTask,
    backend: PolicyBackend,
    make_env: Callable[[], ThoughtMDPEnv],
    problem_ids: Sequence[str],
    sampling: SamplingParams = GREEDY,
    concurrency: int = 64,
) -> HeldoutResult:
    """Roll each problem out once and score it.

    Args:
        task: The task (it scores the chains).
        backend: The policy.
        make_env: A fresh env with a tokenizer, on the problems' split.
        problem_ids: The problems.
        sampling: How thoughts are sampled (default: greedy).
        concurrency: Rollouts in flight at once.

    Returns:
        Rewards and format of every rollout, in the order of ``problem_ids``.
    """
    started = time.perf_counter()
    slots = asyncio.Semaphore(concurrency)

    async def one(problem_id: str) -> Trajectory:
        async with slots:
            return await rollout(make_env(), backend, problem_id, sampling)

    trajectories = await asyncio.gather(*(one(p) for p in problem_ids))
    delimiter = _delimiter_id(make_env())
    return HeldoutResult(
        tuple(problem_ids),
        tuple(t.reward for t in trajectories),
        tuple(is_well_formed(task, t, delimiter) for t in trajectories),
        time.perf_counter() - started,
    )


def is_well_formed(task: VerifiableTask, trajectory: Trajectory, delimiter_id: int | None) -> bool:
    """Every thought ends with the delimiter token and the last one is final."""
    thoughts = trajectory.all_thoughts
    if not thoughts or not trajectory.terminated or not task.is_final(thoughts[-1].text):
        return False
    if delimiter_id is None:
        return True
    return all(t.token_ids is not None and t.token_ids[-1:] == (delimiter_id,) for t in thoughts)


def _delimiter_id(env: ThoughtMDPEnv) -> int | None:
    """The delimiter's token id, when the tokenizer has it as a single token."""
    tokenizer = getattr(env, "tokenizer", None)
    if tokenizer is None:
        return None
    ids = tokenizer.encode(THOUGHT_DELIMITER, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def warm_start_report(folder: Path, recipe: Any) -> dict[str, Any]:
    """Measure a built embedded policy on held-out (test) problems.

    Reports the greedy pass rate and well-formed rate, and the exact-match rate of its
    self-localisation on its own failed chains (sampled at temperature 1) against the step
    oracle, beside the uniform-random baseline ``mean(1 / H_s)`` of the same chains.

    Args:
        folder: The model folder.
        recipe: Its :class:`~thoughtmdp.settings.warmstart.WarmStartRecipe`.

    Returns:
        The report as plain data.
    """
    from thoughtmdp.agents.backends.transformers import TransformersBackend
    from thoughtmdp.agents.warmstart.data import recipe_task
    from thoughtmdp.evaluation.audit import AuditSettings, audit_localization

    task = recipe_task(recipe)
    backend = TransformersBackend(folder, max_batch_size=128)
    problems = task.problems("test")[: recipe.eval_problems]
    greedy = replace(GREEDY, max_tokens=WARM_START_TOKENS)
    sampled = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=WARM_START_TOKENS)
    settings = AuditSettings(suffixes=0, sampling=sampled, localizer_max_tokens=LOCALIZER_TOKENS)

    def make_env() -> ThoughtMDPEnv:
        return ThoughtMDPEnv(task, split="test", tokenizer=backend.tokenizer, max_thoughts=8)

    async def measure() -> tuple[HeldoutResult, Any]:
        ids = [p.id for p in problems]
        heldout = await heldout_pass_rate(task, backend, make_env, ids, greedy)
        return heldout, await audit_localization(task, backend, make_env, problems, settings)

    try:
        heldout, audit = asyncio.run(measure())
    finally:
        backend.close()
    return {"heldout": heldout.summary(), "localization": localization_summary(audit.records)}


def localization_summary(records: Sequence[Any]) -> dict[str, Any]:
    """Exact match of self-localisation against the oracle, beside the uniform baseline.

    An answer that names no valid step counts as a miss; chains the oracle finds no wrong
    step in are left out.

    Args:
        records: :class:`~thoughtmdp.evaluation.audit.LocalizationRecord` objects.

    Returns:
        ``chains``, ``exact_match_rate``, ``uniform_baseline`` (``mean(1 / H_s)``) and
        ``parse_fail_rate``; rates are ``None`` without chains.
    """
    judged = [r for r in records if r.oracle_index is not None]
    if not judged:
        return {"chains": 0, "exact_match_rate": None, "uniform_baseline": None}
    return {
        "chains": len(judged),
        "exact_match_rate": float(np.mean([r.self_index == r.oracle_index for r in judged])),
        "uniform_baseline": float(np.mean([1 / r.seed_length for r in judged])),
        "parse_fail_rate": float(np.mean([r.parse_status != "ok" for r in judged])),
    }


@dataclass(frozen=True)
class HeldoutSpec:
    """What a run's held-out evaluation rolls out.

    Attributes:
        model: The base model folder.
        task: Registered task name.
        task_options: Its options.
        split: The held-out split.
        problems: How many of its first problems.
        max_thoughts: Chain cap.
        max_total_tokens: Thought-token budget of a chain.
        max_tokens: Tokens per thought.
        backend: ``transformers`` or ``vllm``.
        concurrency: Rollouts in flight.
        engine_options: vLLM engine options (``backend="vllm"``).
    """

    model: str
    task: str
    task_options: dict[str, Any]
    split: str = "test"
    problems: int = 400
    max_thoughts: int = 20
    max_total_tokens: int | None = 4096
    max_tokens: int = 256
    backend: str = "transformers"
    concurrency: int = 64
    engine_options: dict[str, Any] | None = None


def evaluate_versions(
    spec: HeldoutSpec,
    adapters: Sequence[tuple[int, Path | None]],
    on_result: Callable[[int, HeldoutResult], None] | None = None,
) -> dict[int, HeldoutResult]:
    """Greedy held-out pass rate of the base model and of adapter versions, in order.

    Args:
        spec: The evaluation.
        adapters: ``(version, adapter folder)`` pairs in increasing version order; version 0
            with ``None`` is the base model (it must come first: an adapter cannot be
            unloaded).
        on_result: Called with each version's result as soon as it is known.

    Returns:
        The result of every version.
    """
    from thoughtmdp.mdp.task import make_task

    task = make_task(spec.task, **spec.task_options)
    backend = _heldout_backend(spec)
    tokenizer = backend.tokenizer
    sampling = replace(GREEDY, max_tokens=spec.max_tokens)
    ids = [p.id for p in task.problems(spec.split)[: spec.problems]]

    def make_env() -> ThoughtMDPEnv:
        return ThoughtMDPEnv(
            task,
            split=spec.split,
            tokenizer=tokenizer,
            max_thoughts=spec.max_thoughts,
            max_total_tokens=spec.max_total_tokens,
        )

    async def run_all() -> dict[int, HeldoutResult]:
        results = {}
        for version, folder in adapters:
            if folder is not None:
                loaded = backend.load_adapter(folder, version)
                if asyncio.iscoroutine(loaded):
                    await loaded
            results[version] = await heldout_pass_rate(
                task, backend, make_env, ids, sampling, spec.concurrency
            )
            if on_result is not None:
                on_result(version, results[version])
        return results

    try:
        return asyncio.run(run_all())
    finally:
        backend.close()
        task.close()


def _heldout_backend(spec: HeldoutSpec) -> Any:
    if spec.backend == "vllm":
        from thoughtmdp.agents.backends.vllm import VLLMBackend

        return VLLMBackend(spec.model, engine_options=spec.engine_options)
    from thoughtmdp.agents.backends.transformers import TransformersBackend

    return TransformersBackend(spec.model, max_batch_size=spec.concurrency)
