"""The held-out evaluation of a run's adapter versions, into ``heldout.json``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from thoughtmdp.runs.files import HELDOUT_FILE, read_heldout
from thoughtmdp.runs.summary import heldout_record, sampled_text
from thoughtmdp.settings.train import TrainConfig
from thoughtmdp.training.base_heldout import (
    base_record_path,
    read_base_record,
    write_base_record,
)


class HeldoutEvaluator:
    """Evaluates a run's adapter versions on its held-out problems, into ``heldout.json``.

    Args:
        resolved: The resolved run.
        console: Where each version's pass rate (and sampled pass@1) is printed.

    Attributes:
        results: ``heldout.json`` records by version, filled as versions are evaluated.
    """

    def __init__(self, resolved: TrainConfig, console: Any) -> None:
        assert resolved.run_dir is not None
        self.resolved, self.console, self.run_dir = resolved, console, resolved.run_dir
        self.results: dict[int, dict[str, Any]] = {}
        self.base_path = base_record_path(resolved)

    def reuse_recorded(self) -> bool:
        """Take the versions the run's ``heldout.json`` holds; whether version 0 was there."""
        self.results.update(read_heldout(self.run_dir))
        return 0 in self.results

    def __call__(self, versions: list[int]) -> None:
        """Evaluate ``versions`` (0 is the base model; it has to come first).

        The embedded policy's version 0 is read from its stored record when an earlier run
        evaluated it the same way (:mod:`thoughtmdp.training.base_heldout`).
        """
        settings = self.resolved.heldout
        if not settings.problems or not versions:
            return
        if versions[0] == 0 and (stored := read_base_record(self.base_path)) is not None:
            self.console.print("held-out record of version 0 (the embedded policy) reused")
            self.results[0] = stored
            self._write()
            versions = versions[1:]
            if not versions:
                return
        adapters = [(v, None if v == 0 else adapter_folder(self.run_dir, v)) for v in versions]
        label = f"evaluating {len(adapters)} version(s) on {settings.problems} problems"
        if settings.samples:
            label += f" (greedy and {settings.samples} samples each)"
        with self.console.status(label):
            self._evaluate(adapters)

    def _evaluate(self, adapters: list[tuple[int, Path | None]]) -> None:
        from thoughtmdp.evaluation.backends import make_backend
        from thoughtmdp.evaluation.engine import EvalEngine
        from thoughtmdp.evaluation.heldout import evaluate_versions
        from thoughtmdp.mdp.task import make_task

        actor, settings = self.resolved.actor, self.resolved.heldout
        task = make_task(actor.task, **actor.task_options)
        backend, _ = make_backend(
            self.resolved.learner.model,
            settings.backend,
            adapters=[folder for _, folder in adapters if folder is not None],
            max_batch_size=settings.concurrency,
            engine_options=actor.engine_options,
        )
        problems = task.problems(settings.split)[: settings.problems]

        async def run_all() -> None:  # the engine's slots belong to this event loop
            engine = EvalEngine(backend, task, settings.eval_settings(actor), split=settings.split)
            sampled = None
            if settings.samples:  # shares the greedy engine's slots: one batch for both
                sampled = EvalEngine(
                    backend,
                    task,
                    settings.sampled_eval_settings(actor),
                    split=settings.split,
                    slots=engine.slots,
                )
            await evaluate_versions(engine, problems, adapters, self._record, sampled)

        try:
            asyncio.run(run_all())
        finally:
            backend.close()
            task.close()

    def _record(self, version: int, result: Any) -> None:
        record = self.results[version] = heldout_record(result)
        sampled = record.get("sampled")
        self.console.print(
            f"held-out pass rate, version {version}: {result.pass_rate:.1%} of "
            f"{len(result.rewards)} problems"
            + (
                f"; sampled pass@1 {sampled_text(sampled)} ({sampled['samples']} samples, "
                f"T={sampled['temperature']:g})"
                if sampled
                else ""
            )
            + f" ({result.seconds:.1f}s)"
        )
        if version == 0:
            write_base_record(self.base_path, record)
        self._write()

    def _write(self) -> None:
        data = {str(v): r for v, r in sorted(self.results.items())}
        (self.run_dir / HELDOUT_FILE).write_text(json.dumps(data) + "\n")


def adapter_folder(run_dir: Path, version: int) -> Path:
    """Where the run keeps adapter ``version``."""
    return run_dir / "adapters" / f"v{version:06d}"


def versions_to_evaluate(run_dir: Path, between: int) -> list[int]:
    """Evenly spaced published versions, the last included (the first, 0, is done before)."""
    root = run_dir / "adapters"
    published = sorted(int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit())
    if not published:
        return []
    last = published[-1]
    picks = {round(last * k / (between + 1)) for k in range(1, between + 1)} | {last}
    return sorted(v for v in picks if v in published)
