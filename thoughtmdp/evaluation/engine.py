"""Evaluating checkpoints on a suite: thought-level rollouts per item, graded and stored.

Every (adapter, task, item, sample) is rolled out once with the Thought MDP prompt of
training and its record appended to ``records.jsonl`` in the output folder as soon as it is
graded, so an interrupted run resumes where it stopped. Items are drawn per seed with
:func:`~thoughtmdp.evaluation.suite.sample_problems`; an item drawn by several seeds is rolled out
once (greedy decoding gives one answer per item).
"""

from __future__ import annotations

import asyncio
import inspect
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.episodes.rollout import rollout
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.records import PASS_REWARD, ItemRecord, RecordKey, RecordStore
from thoughtmdp.evaluation.suite import Suite, sample_problems
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.types import Problem, Trajectory


@dataclass(frozen=True)
class EvalSettings:
    """How each item is rolled out.

    Attributes:
        temperature: Sampling temperature (0 = greedy, the paper's evaluation).
        top_p: Nucleus mass kept.
        samples: Rollouts per item, the n of pass@k.
        max_thoughts: Chain cap.
        max_tokens: Tokens per thought.
        max_total_tokens: Thought tokens per chain.
        sampling_seed: Base seed of the per-request seeds (matters when temperature > 0).
        concurrency: Rollouts in flight at once.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1
    max_thoughts: int = 20
    max_tokens: int = 256
    max_total_tokens: int | None = 4096
    sampling_seed: int = 0
    concurrency: int = 64

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the records it reuses."""
        kept = ("temperature", "top_p", "max_thoughts", "max_tokens", "max_total_tokens")
        return {k: getattr(self, k) for k in (*kept, "sampling_seed")}


@dataclass(frozen=True)
class Method:
    """A row of the report: one or more checkpoints of one training method.

    Attributes:
        name: The row name.
        adapters: LoRA adapter folders; ``None`` is the base model.
    """

    name: str
    adapters: tuple[str | None, ...] = (None,)


@dataclass(frozen=True)
class Run:
    """The items one (method, adapter, task, seed) is scored on.

    Attributes:
        method: The row.
        adapter: The checkpoint.
        task: The column.
        seed: The item sample's seed.
        problem_ids: The drawn items.
    """

    method: str
    adapter: str | None
    task: str
    seed: int
    problem_ids: tuple[str, ...]


@dataclass
class EvalResult:
    """What :func:`evaluate` did: the runs, every record they use, and the work done.

    Attributes:
        runs: One per method, adapter, task and seed.
        records: Records by key (resumed and new).
        graded: Rollouts graded in this call.
        resumed: Rollouts found in the output folder.
    """

    runs: list[Run] = field(default_factory=list)
    records: dict[RecordKey, ItemRecord] = field(default_factory=dict)
    graded: int = 0
    resumed: int = 0


async def evaluate(
    backend: PolicyBackend,
    suite: Suite,
    tasks: Mapping[str, VerifiableTask],
    methods: Sequence[Method],
    settings: EvalSettings,
    store: RecordStore,
    progress: Any | None = None,
) -> EvalResult:
    """Roll out and grade every item of every run not already in ``store``.

    Base-model rows run first: a backend cannot drop an adapter once loaded.

    Args:
        backend: The policy; it needs a ``tokenizer`` attribute and ``load_adapter``.
        suite: Tasks (columns), item counts and seeds.
        tasks: The built task of each suite entry, by entry name.
        methods: The rows.
        settings: Sampling and caps.
        store: Where records are read from and appended to.
        progress: A ``rich.progress.Progress`` to report to, or ``None``.

    Returns:
        The runs and their records.
    """
    result = EvalResult()
    known = store.load()
    pairs = [(m, a) for m in methods for a in m.adapters]
    pairs.sort(key=lambda pair: pair[1] is not None)
    for method, adapter in pairs:
        await use_adapter(backend, adapter)
        slots = asyncio.Semaphore(settings.concurrency)  # shared, so all tasks batch together
        runs = []
        for entry in suite.tasks:
            task = tasks[entry.name]
            drawn = draw_items(task, suite.items(entry), suite.seeds)
            result.runs += [
                Run(method.name, adapter, entry.name, seed, tuple(p.id for p in problems))
                for seed, problems in drawn.items()
            ]
            unique = {p.id: p for problems in drawn.values() for p in problems}
            jobs = [(p, s) for p in unique.values() for s in range(settings.samples)]
            runner = _TaskRunner(backend, task, entry.name, method.name, adapter, settings, slots)
            runs.append(runner.run(jobs, known, result, store, progress))
        await asyncio.gather(*runs)
    return result


def draw_items(task: VerifiableTask, n: int, seeds: Sequence[int]) -> dict[int, list[Problem]]:
    """The items each seed draws from the task's evaluation split.

    Args:
        task: The task.
        n: Items per seed (all of them when the split has fewer).
        seeds: The seeds.

    Returns:
        Seed -> drawn problems, in split order.
    """
    problems = task.problems(evaluation_split(task))
    return {seed: sample_problems(problems, n, seed) for seed in seeds}


def evaluation_split(task: VerifiableTask) -> str:
    """The split evaluated: ``"test"`` when the task has one, else its first split."""
    return "test" if "test" in task.splits else task.splits[0]


async def use_adapter(backend: Any, adapter: str | None) -> None:
    """Switch ``backend`` to ``adapter`` (sync or async ``load_adapter``).

    Raises:
        ThoughtMDPError: If the base model is asked for after an adapter was loaded.
    """
    current = getattr(backend, "adapter", None)
    if adapter is None:
        if current is not None:
            raise ThoughtMDPError("the base model cannot be evaluated after an adapter")
        return
    if current == adapter:
        return
    if inspect.iscoroutinefunction(backend.load_adapter):
        await backend.load_adapter(adapter)
    else:
        await asyncio.to_thread(backend.load_adapter, adapter)


@dataclass
class _TaskRunner:
    """Grades the jobs of one adapter on one task, reporting each to a progress bar."""

    backend: Any
    task: VerifiableTask
    name: str
    method: str
    adapter: str | None
    settings: EvalSettings
    slots: asyncio.Semaphore
    progress: Any | None = None
    bar: Any = None

    async def run(
        self,
        jobs: list[tuple[Problem, int]],
        known: dict[RecordKey, ItemRecord],
        result: EvalResult,
        store: RecordStore,
        progress: Any | None,
    ) -> None:
        if progress is not None:
            self.progress = progress
            self.bar = progress.add_task(f"{self.method} · {self.name}", total=len(jobs))
        todo = []
        for problem, sample in jobs:
            key = (self.adapter or "", self.name, problem.id, sample)
            if key in known:
                result.records[key] = known[key]
                result.resumed += 1
                self._tick()
            else:
                todo.append(self._grade(problem, sample, result, store))
        await asyncio.gather(*todo)

    async def _grade(
        self,
        problem: Problem,
        sample: int,
        result: EvalResult,
        store: RecordStore,
    ) -> None:
        async with self.slots:
            sampling = self._sampling(problem, sample)
            trajectory = await rollout(self._env(), self.backend, problem.id, sampling)
        record = self._record(problem, sample, trajectory)
        store.append(record)
        result.records[record.key] = record
        result.graded += 1
        self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.bar)

    def _env(self) -> ThoughtMDPEnv:
        s = self.settings
        return ThoughtMDPEnv(
            self.task,
            split=evaluation_split(self.task),
            tokenizer=self.backend.tokenizer,
            max_thoughts=s.max_thoughts,
            max_total_tokens=s.max_total_tokens,
        )

    def _sampling(self, problem: Problem, sample: int) -> SamplingParams:
        s = self.settings
        seed = zlib.crc32(f"{s.sampling_seed}/{self.name}/{problem.id}/{sample}".encode())
        return SamplingParams(
            temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=seed
        )

    def _record(self, problem: Problem, sample: int, trajectory: Trajectory) -> ItemRecord:
        info = trajectory.info
        reason = info.get("reason")
        if trajectory.truncated:
            reason = "truncated: chain cap or token budget reached without a final answer"
        return ItemRecord(
            method=self.method,
            adapter=self.adapter,
            task=self.name,
            problem_id=problem.id,
            sample=sample,
            thoughts=tuple(t.text for t in trajectory.all_thoughts),
            answer=None if info.get("answer") is None else str(info.get("answer")),
            gold=problem.answer,
            reward=float(trajectory.reward),
            passed=trajectory.reward >= PASS_REWARD,
            terminated=trajectory.terminated,
            truncated=trajectory.truncated,
            reason=None if reason is None else str(reason),
        )
