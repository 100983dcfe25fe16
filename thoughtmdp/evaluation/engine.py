"""The evaluation engine: problems rolled out through the Thought MDP, as training rolls them out.

Every evaluation goes through :class:`EvalEngine`: the held-out pass rate of ``thoughtmdp
train`` (:mod:`~thoughtmdp.evaluation.heldout`), the suites of ``thoughtmdp eval``
(:mod:`~thoughtmdp.evaluation.benchmark`) and the chains of ``thoughtmdp audit-localization``
(:mod:`~thoughtmdp.evaluation.audit`). Each rollout is one
:func:`~thoughtmdp.episodes.rollout.rollout` in a fresh env, seeded by its problem and sample,
so evaluations with the same settings sample the same chains.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtmdp.backend import PolicyBackend
from thoughtmdp.episodes.metrics import PASS_REWARD
from thoughtmdp.episodes.rollout import SEED_MODULUS, rollout
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.types import PrefixState, Problem, Trajectory

Job = tuple[Problem, int]
"""A problem and the index of one of its samples."""


@dataclass(frozen=True)
class EvalRollout:
    """One rollout of a problem, graded by the task.

    Attributes:
        problem: The problem.
        sample: Index of the rollout among the problem's samples.
        trajectory: The chain, its reward and the verifier's info.
    """

    problem: Problem
    sample: int
    trajectory: Trajectory

    @property
    def passed(self) -> bool:
        """Whether the reward reaches ``PASS_REWARD``."""
        return self.trajectory.reward >= PASS_REWARD


class EvalEngine:
    """Rolls a task's problems out with one backend, ``settings.concurrency`` at a time.

    Args:
        backend: The policy; it needs a ``tokenizer`` (states are token ids).
        task: The task; it scores the chains.
        settings: Sampling, caps, samples per problem, seeds and concurrency.
        split: The problems' split (``None``: :func:`evaluation_split`).
        name: Scope of the request seeds (the suite's name of the task; empty: none).
        slots: A semaphore to share with other engines, so that all of them batch together
            (``None``: one of ``settings.concurrency`` slots).
    """

    def __init__(
        self,
        backend: PolicyBackend,
        task: VerifiableTask,
        settings: EvalSettings,
        *,
        split: str | None = None,
        name: str = "",
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.backend, self.task, self.settings = backend, task, settings
        self.split = split if split is not None else evaluation_split(task)
        self.name = name
        self.slots = slots if slots is not None else asyncio.Semaphore(settings.concurrency)

    def env(self) -> ThoughtMDPEnv:
        """A fresh env on the split, with the backend's tokenizer, chat format and caps."""
        return ThoughtMDPEnv(
            self.task,
            split=self.split,
            tokenizer=getattr(self.backend, "tokenizer", None),
            chat_template=self.settings.chat_template,
            max_thoughts=self.settings.max_thoughts,
            max_total_tokens=self.settings.max_total_tokens,
        )

    def request_seed(self, problem_id: str, sample: int) -> int:
        """The seed of one problem's sample: a hash of the base seed, the scope and both.

        >>> from thoughtmdp.envs.arith_chain import ArithChainTask
        >>> engine = EvalEngine(None, ArithChainTask(), EvalSettings(sampling_seed=3))
        >>> engine.request_seed("test-0", 1) == engine.request_seed("test-0", 1)
        True
        """
        scope = [self.name] if self.name else []
        key = "/".join([str(self.settings.sampling_seed), *scope, problem_id, str(sample)])
        return zlib.crc32(key.encode()) % SEED_MODULUS

    def jobs(self, problems: Iterable[Problem]) -> list[Job]:
        """Every sample of every problem, problem by problem."""
        return [(p, s) for p in problems for s in range(self.settings.samples)]

    async def rollout(self, state: str | PrefixState, seed: int) -> Trajectory:
        """One rollout from a problem's prompt (its id) or from a prefix, in a free slot.

        Args:
            state: A problem id or a prefix state.
            seed: The request seed (thought ``h`` samples with ``seed + h``).

        Returns:
            The trajectory.
        """
        async with self.slots:
            return await rollout(self.env(), self.backend, state, self.settings.sampling(seed))

    async def run(
        self, jobs: Iterable[Job], on_rollout: Callable[[EvalRollout], None] | None = None
    ) -> list[EvalRollout]:
        """Roll out every job, each from its problem's prompt with its own seed.

        Args:
            jobs: ``(problem, sample)`` pairs.
            on_rollout: Called with each rollout as soon as it is graded.

        Returns:
            The rollouts, in the order of ``jobs``.
        """

        async def one(problem: Problem, sample: int) -> EvalRollout:
            trajectory = await self.rollout(problem.id, self.request_seed(problem.id, sample))
            done = EvalRollout(problem, sample, trajectory)
            if on_rollout is not None:
                on_rollout(done)
            return done

        return list(await asyncio.gather(*(one(p, s) for p, s in jobs)))


def evaluation_split(task: VerifiableTask) -> str:
    """The split evaluated: ``"test"`` when the task has one, else its first split."""
    return "test" if "test" in task.splits else task.splits[0]


async def use_adapter(backend: Any, adapter: str | Path | None, version: int | None = None) -> None:
    """Switch ``backend`` to ``adapter`` for the requests that follow.

    Args:
        backend: The policy.
        adapter: A LoRA adapter folder; ``None`` keeps the base model.
        version: The adapter's policy version (``None``: the backend counts on).

    Raises:
        ThoughtMDPError: If the base model is asked for after an adapter was loaded.
    """
    current = getattr(backend, "adapter", None)
    if adapter is None:
        if current is not None:
            raise ThoughtMDPError("the base model cannot be evaluated after an adapter")
        return
    if current != str(adapter):
        await backend.load_adapter(adapter, version)
