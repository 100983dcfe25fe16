"""Evaluating checkpoints on a suite: every item rolled out by the engine, graded and stored.

Every (adapter, task, item, sample) is rolled out once by an
:class:`~thoughtmdp.evaluation.engine.EvalEngine` and its record appended to ``records.jsonl``
in the output folder as soon as it is graded, so an interrupted run resumes where it stopped.
Each task's items are drawn once, before any rollout, with
:func:`~thoughtmdp.evaluation.items.draw_sample` (the suite's ``sample_seed``, its training
problems left out): the base model and every adapter are scored on the same items, so the
spread of a row comes from its adapters (one per training seed) alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thoughtmdp.backend import PolicyBackend
from thoughtmdp.evaluation.engine import (
    EvalEngine,
    EvalRollout,
    Job,
    evaluation_split,
    use_adapter,
)
from thoughtmdp.evaluation.items import ItemSample, draw_sample
from thoughtmdp.evaluation.records import ItemRecord, RecordKey, RecordStore
from thoughtmdp.evaluation.suite import Suite
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.settings.evaluation import EvalSettings


@dataclass(frozen=True)
class Method:
    """A row of the report: one or more checkpoints of one training method.

    Attributes:
        name: The row name.
        adapters: LoRA adapter folders, one per training seed; ``None`` is the base model.
    """

    name: str
    adapters: tuple[str | None, ...] = (None,)


@dataclass(frozen=True)
class Run:
    """The items one (method, adapter, task) is scored on: the task's one item sample.

    Attributes:
        method: The row.
        adapter: The checkpoint (one training seed of the row); ``None``: the base model.
        task: The column.
        problem_ids: The task's sampled items (the same for every run of the task).
    """

    method: str
    adapter: str | None
    task: str
    problem_ids: tuple[str, ...]


@dataclass
class EvalResult:
    """What :func:`evaluate` did: the item samples, the runs, their records, the work done.

    Attributes:
        samples: The item sample of each task, by suite name.
        runs: One per method, adapter and task.
        records: Records by key (resumed and new).
        graded: Rollouts graded in this call.
        resumed: Rollouts found in the output folder.
    """

    samples: dict[str, ItemSample] = field(default_factory=dict)
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

    Each task's item sample is drawn once, before any rollout, and shared by every row.
    Base-model rows run first: a backend cannot drop an adapter once loaded.

    Args:
        backend: The policy; it needs a ``tokenizer`` attribute and ``load_adapter``.
        suite: Tasks (columns), item counts and the sample seed.
        tasks: The built task of each suite entry, by entry name.
        methods: The rows.
        settings: Sampling and caps.
        store: Where records are read from and appended to.
        progress: A ``rich.progress.Progress`` to report to, or ``None``.

    Returns:
        The runs and their records.
    """
    result = EvalResult(samples=draw_samples(suite, tasks))
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
                    result.samples[e.name],
                )
                for e in suite.tasks
            )
        )
    return result


def draw_samples(suite: Suite, tasks: Mapping[str, VerifiableTask]) -> dict[str, ItemSample]:
    """The one item sample of every task of ``suite``, drawn with its ``sample_seed``.

    Args:
        suite: The tasks, item counts and sample seed.
        tasks: The built task of each suite entry, by entry name.

    Returns:
        Entry name -> its sample, from the split the engine evaluates.
    """
    return {
        e.name: draw_sample(
            e, tasks[e.name], evaluation_split(tasks[e.name]), suite.items(e), suite.sample_seed
        )
        for e in suite.tasks
    }


@dataclass
class _Grader:
    """Grades one adapter's jobs on each task, storing records and reporting progress."""

    method: str
    adapter: str | None
    known: dict[RecordKey, ItemRecord]
    result: EvalResult
    store: RecordStore
    progress: Any | None

    async def grade(self, engine: EvalEngine, items: ItemSample) -> None:
        ids = tuple(p.id for p in items.problems)
        self.result.runs.append(Run(self.method, self.adapter, engine.name, ids))
        jobs = engine.jobs(items.problems)
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
