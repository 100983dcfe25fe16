"""Episode construction: base group, seed chains, reset decisions and reset groups.

This is Algorithm 2 of the paper generalised to K resets of M suffixes. Rollouts from the
prompt are sampled in waves (all rollouts of a wave in parallel) and read in sample order,
which gives the same distribution as sampling one at a time: the first K failures are the
seeds, every other rollout joins the base group until it holds G1. A seed's reset group starts
the moment the seed is known, while the base group may still be sampling.

A seed whose reset policy fell back with ``fallback="grpo"`` gets no reset group: the seed and
``M - 1`` fresh rollouts from the prompt join the base group instead, so the episode still
trains on ``G1 + K * M`` rollouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.episodes.advantages import group_advantages
from thoughtmdp.episodes.presets import EpisodeConfig
from thoughtmdp.episodes.reset_policies import ResetContext, ResetPolicy, make_reset_policy
from thoughtmdp.episodes.rollout import rollout
from thoughtmdp.errors import StepOracleUnavailable, ThoughtMDPError
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.types import Episode, Group, GroupKind, PrefixState, ResetRecord, Trajectory

BASE_STREAM = 0  # request-seed streams: 0 for prompt rollouts, 1 + k for reset k


@dataclass
class _PhaseOne:
    base: list[Trajectory]
    seeds: list[Trajectory]
    surplus: list[Trajectory]  # correct rollouts beyond G1, kept only for a fallback group


@dataclass
class _Reset:
    record: ResetRecord
    group: Group | None  # None: no reset group for this seed
    to_base: list[Trajectory]  # rollouts from the prompt that join the base group ("grpo")


class EpisodeBuilder:
    """Builds :class:`~thoughtmdp.types.Episode` objects for one task, backend and config.

    Args:
        task: The task (shared by all envs).
        backend: The policy to sample from.
        make_env: Returns a fresh env with a tokenizer; each rollout uses its own, and the
            localiser's question is rendered in the envs' chat format (:attr:`render_prompt`).
        config: Group sizes and the reset policy.
        sampling: Sampling of thoughts (temperature, top-p, max tokens per thought).
        reset_policy: A policy object, overriding ``config.reset_policy``.

    Raises:
        StepOracleUnavailable: If the reset policy needs ``first_error_step`` and the task
            has none.
    """

    def __init__(
        self,
        task: VerifiableTask,
        backend: PolicyBackend,
        make_env: Callable[[], ThoughtMDPEnv],
        config: EpisodeConfig | None = None,
        sampling: SamplingParams | None = None,
        reset_policy: ResetPolicy | None = None,
    ) -> None:
        self.task, self.backend, self.make_env = task, backend, make_env
        self.config = config or EpisodeConfig()
        self.sampling = sampling or SamplingParams()
        self.policy = reset_policy or make_reset_policy(
            self.config.reset_policy, **self.config.reset_policy_options
        )
        if self.config.num_resets and self.policy.requires_step_oracle and not task.has_step_oracle:
            raise StepOracleUnavailable(
                f"reset policy {self.policy.name!r} needs a step oracle; "
                f"task {task.name!r} has none"
            )

    async def build(self, problem_id: str, seed: int | None = None) -> Episode:
        """All groups of one prompt. ``seed`` makes sampling and reset choices reproducible."""
        seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
        started = time.perf_counter()
        resets: list[asyncio.Task[_Reset]] = []
        phase = await self._sample_from_prompt(problem_id, seed, resets)
        finished = await asyncio.gather(*resets)
        groups = self._base_groups(phase, [t for r in finished for t in r.to_base])
        groups += [r.group for r in finished if r.group is not None]
        used = {id(t) for g in groups for t in g.trajectories}
        unused = [t for t in phase.base + phase.surplus if id(t) not in used]
        return Episode(
            problem_id,
            tuple(groups),
            tuple(r.record for r in finished),
            fell_back=self.config.num_resets > 0 and not phase.seeds,
            unused_tokens=tuple(t.num_sampled_tokens for t in unused),
            timings={
                "total_s": time.perf_counter() - started,
                "localize_s": sum(r.record.seconds for r in finished),
            },
        )

    async def _sample_from_prompt(
        self,
        problem_id: str,
        seed: int,
        resets: list[asyncio.Task[_Reset]],
    ) -> _PhaseOne:
        config, phase, attempts = self.config, _PhaseOne([], [], []), 0
        while attempts < config.max_seed_attempts:
            need = (config.num_resets - len(phase.seeds)) + (
                config.base_group_size - len(phase.base)
            )
            if need == 0:
                break
            wave = min(need, config.max_seed_attempts - attempts)
            results = await asyncio.gather(
                *(self._rollout(problem_id, seed, BASE_STREAM, attempts + i) for i in range(wave))
            )
            attempts += wave
            for trajectory in results:  # sample order decides, as if drawn one by one
                if trajectory.reward < 1 and len(phase.seeds) < config.num_resets:
                    phase.seeds.append(trajectory)
                    k = len(phase.seeds)
                    resets.append(asyncio.create_task(self._reset_group(trajectory, seed, k)))
                elif len(phase.base) < config.base_group_size:
                    phase.base.append(trajectory)
                else:
                    phase.surplus.append(trajectory)
        return phase

    def _base_groups(self, phase: _PhaseOne, to_base: list[Trajectory]) -> list[Group]:
        base = phase.base + to_base
        if self.config.num_resets and not phase.seeds:
            # No failure found: a GRPO-style group of everything sampled, so the prompt still
            # contributes its rollouts (with zero advantage, as all of them are correct).
            size = max(
                self.config.base_group_size, self.config.num_resets * self.config.suffix_group_size
            )
            base = (phase.base + phase.surplus)[:size]
        if not base:
            return []
        return [self._group("base", base)]

    async def _reset_group(self, seed_trajectory: Trajectory, seed: int, k: int) -> _Reset:
        started = time.perf_counter()
        rng = np.random.default_rng([seed, k])
        context = ResetContext(seed_trajectory, self.task, self.backend, rng, self.render_prompt)
        decision = await self.policy.decide(context)
        oracle = self.task.first_error_step(seed_trajectory) if self.task.has_step_oracle else None
        record = ResetRecord(seed_trajectory, decision, oracle, time.perf_counter() - started)
        h = decision.reset_index
        if h is None and decision.fallback == "grpo":
            # The M rollouts the reset group would have had, drawn from the prompt instead
            # (stream 1 + k stays this reset's, so the draws are as reproducible as suffixes).
            fresh = await asyncio.gather(
                *(
                    self._rollout(seed_trajectory.problem_id, seed, BASE_STREAM + k, j)
                    for j in range(self.config.suffix_group_size - 1)
                )
            )
            return _Reset(record, None, [seed_trajectory, *fresh])
        if h is None:
            return _Reset(record, None, [])
        if not 1 <= h <= record.seed_length:
            raise ThoughtMDPError(
                f"reset policy {self.policy.name!r} chose h* = {h}, outside 1..{record.seed_length}"
            )
        start = seed_trajectory.start
        prefix = PrefixState(
            start.problem_id, start.prompt_token_ids, seed_trajectory.all_thoughts[: h - 1]
        )
        suffixes = await asyncio.gather(
            *(
                self._rollout(prefix, seed, BASE_STREAM + k, j)
                for j in range(self.config.suffix_group_size)
            )
        )
        return _Reset(record, replace(self._group("reset", list(suffixes)), reset_index=h), [])

    @cached_property
    def render_prompt(self) -> Callable[[str], str]:
        """Renders a question to the policy (the localiser's) as the envs render the prompt."""
        return self.make_env().chat.render

    def _group(self, kind: GroupKind, trajectories: list[Trajectory]) -> Group:
        advantages = group_advantages([t.reward for t in trajectories], self.config.normalize_std)
        return Group(kind, tuple(trajectories), tuple(float(a) for a in advantages))

    async def _rollout(
        self, state: PrefixState | str, seed: int, stream: int, index: int
    ) -> Trajectory:
        request_seed = int(
            np.random.SeedSequence([seed, stream, index]).generate_state(1)[0] % 2**31
        )
        return await rollout(
            self.make_env(), self.backend, state, replace(self.sampling, seed=request_seed)
        )
