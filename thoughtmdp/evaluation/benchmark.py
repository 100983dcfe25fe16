"""Evaluating checkpoints on a suite: every item rolled out by the engine, graded and stored.

Every (adapter, task, item, sample) is rolled out once by an
:class:`~thoughtmdp.evaluation.engine.EvalEngine` and its record appended to ``records.jsonl``
in the output folder as soon as it is graded, so an interrupted run resumes where it stopped.
Items are drawn per seed with :func:`~thoughtmdp.evaluation.suite.sample_problems`; an item
drawn by several seeds is rolled out once (greedy decoding gives one answer per item).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thoughtmdp.backend import PolicyBackend
from thoughtmdp.evaluation.engine import EvalEngine, EvalRollout, Job, use_adapter
from thoughtmdp.evaluation.records import ItemRecord, RecordKey, RecordStore
from thoughtmdp.evaluation.suite import Suite, sample_problems
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.types import Problem


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
        grader = _Grader(method.name, adapter, known, result, store, progress)
        await asyncio.gather(
            *(
                grader.grade(
                    EvalEngine(backend, tasks[e.name], settings, name=e.name, slots=slots),
                    suite.items(e),
                    suite.seeds,
                )
                for e in suite.tasks
            )
        )
    return result


def draw_items(
    problems: Sequence[Problem], n: int, seeds: Sequence[int]
) -> dict[int, list[Problem]]:
    """The items each seed draws from a split.

    Args:
        problems: The split's problems.
        n: Items per seed (all of them when the split has fewer).
        seeds: The seeds.

    Returns:
        Seed -> drawn problems, in split order.
    """
    return {seed: sample_problems(problems, n, seed) for seed in seeds}


@dataclass
class _Grader:
    """Grades one adapter's jobs on each task, storing records and reporting progress."""

    method: str
    adapter: str | None
    known: dict[RecordKey, ItemRecord]
    result: EvalResult
    store: RecordStore
    progress: Any | None

    async def grade(self, engine: EvalEngine, n: int, seeds: Sequence[int]) -> None:
        drawn = draw_items(engine.task.problems(engine.split), n, seeds)
        self.result.runs += [
            Run(self.method, self.adapter, engine.name, seed, tuple(p.id for p in problems))
            for seed, problems in drawn.items()
        ]
        unique = {p.id: p for problems in drawn.values() for p in problems}
        jobs = engine.jobs(unique.values())
        bar = None
        if self.progress is not None:
            bar = self.progress.add_task(f"{self.method} · {engine.name}", total=len(jobs))
        todo: list[Job] = []
        for problem, sample in jobs:
            key = (self.adapter or "", engine.name, problem.id, sample)
            if key in self.known:
                self.result.records[key] = self.known[key]
                self.result.resumed += 1
                self._tick(bar)
            else:
                todo.append((problem, sample))

        def store(done: EvalRollout) -> None:
            record = item_record(done, self.method, self.adapter, engine.name)
            self.store.append(record)
            self.result.records[record.key] = record
            self.result.graded += 1
            self._tick(bar)

        await engine.run(todo, store)

    def _tick(self, bar: Any) -> None:
        if self.progress is not None:
            self.progress.advance(bar)


def item_record(done: EvalRollout, method: str, adapter: str | None, task: str) -> ItemRecord:
    """The stored record of one graded rollout.

    Args:
        done: The rollout.
        method: The report row that asked for it.
        adapter: Its adapter folder; ``None`` for the base model.
        task: The suite's name of the task.

    Returns:
        The record, with why the chain failed when the verifier or the caps tell.
    """
    trajectory, info = done.trajectory, done.trajectory.info
    reason = info.get("reason")
    if trajectory.truncated:
        reason = "truncated: chain cap or token budget reached without a final answer"
    return ItemRecord(
        method=method,
        adapter=adapter,
        task=task,
        problem_id=done.problem.id,
        sample=done.sample,
        thoughts=tuple(t.text for t in trajectory.all_thoughts),
        answer=None if info.get("answer") is None else str(info.get("answer")),
        gold=done.problem.answer,
        reward=float(trajectory.reward),
        passed=done.passed,
        terminated=trajectory.terminated,
        truncated=trajectory.truncated,
        reason=None if reason is None else str(reason),
    )
