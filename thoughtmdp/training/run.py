"""``thoughtmdp train``: model, held-out baseline, learner and actors, evaluation, summary, plots.

The phases run one after the other, so each has the machine to itself and its time is its
own: (1) the embedded policy is built or found in the cache, (2) the base model is evaluated
on the held-out problems, (3) the learner and the actors train until ``learner.max_steps``
or the time budget, (4) adapter versions are evaluated on the same problems, (5) the summary
and the plots are written. Every phase's output lands in the run folder as it is produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from thoughtmdp.runs.files import CONFIG_FILE, HELDOUT_FILE, SUMMARY_FILE
from thoughtmdp.runs.progress import Progress
from thoughtmdp.runs.summary import heldout_record, print_summary, sampled_text, write_summary
from thoughtmdp.settings.learner import check_trackers
from thoughtmdp.settings.train import (
    TrainConfig,
    actor_config,
    default_run_dir,
    learner_config,
    method_name,
    resolve,
)
from thoughtmdp.training import launch
from thoughtmdp.training.base_heldout import (
    base_record_path,
    read_base_record,
    write_base_record,
)


def train(config: TrainConfig, console: Any) -> dict[str, Any]:
    """Run every phase of a training run; returns the summary.

    Args:
        config: A validated train config (not yet resolved).
        console: A ``rich.console.Console`` for progress and the summary.

    Returns:
        The summary (also written to ``run_dir/summary.json``).

    Raises:
        ConfigError: If a tracker of ``learner.report_to`` is not installed.
        ProcessFailed: If the learner or an actor died.
    """
    check_trackers(config.learner)
    run_dir = Path(config.run_dir or default_run_dir(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = resolve(config, run_dir, _bind(config))
    timings: dict[str, float] = {}
    _announce(resolved, console)
    started = time.perf_counter()
    warm_start = _ensure_model(resolved, console)
    timings["model_s"] = time.perf_counter() - started
    launch.write_yaml(run_dir / CONFIG_FILE, resolved)
    evaluate = HeldoutEvaluator(resolved, console)
    phase = time.perf_counter()
    evaluate([0])
    timings["heldout_before_s"] = time.perf_counter() - phase
    phase = time.perf_counter()
    stopped_by_time = _train(resolved, console)
    timings["training_s"] = time.perf_counter() - phase
    phase = time.perf_counter()
    evaluate(_versions_to_evaluate(run_dir, resolved.heldout.versions))
    timings["heldout_after_s"] = time.perf_counter() - phase
    summary = write_summary(resolved, evaluate.results, warm_start, timings, stopped_by_time)
    if resolved.plots:
        phase = time.perf_counter()
        from thoughtmdp.runs.plots import plot_runs

        summary["plots"] = [str(p) for p in plot_runs([run_dir], run_dir / "plots")]
        _plots_to_trackers(run_dir, summary["plots"], console)
        timings["plots_s"] = time.perf_counter() - phase
    timings["total_s"] = time.perf_counter() - started
    summary["timings"] = {k: round(v, 1) for k, v in timings.items()}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, console)
    return summary


def _plots_to_trackers(run_dir: Path, plots: list[str], console: Any) -> None:
    """Add the plots to the experiment-tracker runs the learner opened (``trackers.json``)."""
    from thoughtmdp.learners.trackers import log_plots

    trackers = log_plots(run_dir, [Path(p) for p in plots])
    if trackers:
        console.print(f"plots added to the {', '.join(trackers)} run(s)")


def _bind(config: TrainConfig) -> str | None:
    if config.learner.bind.endswith(":0"):
        return launch.free_loopback_address()
    return None


def _announce(resolved: TrainConfig, console: Any) -> None:
    from thoughtmdp.settings.actor import resolve_backend

    backend = resolve_backend(resolved.actor)
    why = "vLLM is installed" if backend == "vllm" else "vLLM is not installed"
    if resolved.actor.backend != "auto":
        why = f"actor.backend={resolved.actor.backend}"
    model = (
        f"the embedded policy (a tiny model warm-started on {resolved.warmstart.task})"
        if resolved.embedded
        else resolved.model
    )
    console.print(f"[bold]thoughtmdp train[/bold]: run folder {resolved.run_dir}")
    console.print(f"actors sample with the {backend} backend ({why})")
    console.print(
        f"model: {model}; method {method_name(resolved)}, {resolved.actors} actor(s), "
        f"{resolved.learner.max_steps} steps of {resolved.learner.prompts_per_step} prompts"
        + (f", at most {resolved.max_minutes:g} min of training" if resolved.max_minutes else "")
    )


def _ensure_model(resolved: TrainConfig, console: Any) -> dict[str, Any] | None:
    """Build or find the embedded policy; ``None`` for a user's model."""
    if not resolved.embedded:
        return None
    from thoughtmdp.training.warm_start import warm_start_with_progress

    report: dict[str, Any] = warm_start_with_progress(resolved.warmstart, console)
    return report


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
        adapters = [(v, None if v == 0 else _adapter_folder(self.run_dir, v)) for v in versions]
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


def _adapter_folder(run_dir: Path, version: int) -> Path:
    return run_dir / "adapters" / f"v{version:06d}"


def _versions_to_evaluate(run_dir: Path, between: int) -> list[int]:
    """Evenly spaced published versions, the last included (the first, 0, is done before)."""
    root = run_dir / "adapters"
    published = sorted(int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit())
    if not published:
        return []
    last = published[-1]
    picks = {round(last * k / (between + 1)) for k in range(1, between + 1)} | {last}
    return sorted(v for v in picks if v in published)


def _train(resolved: TrainConfig, console: Any) -> bool:
    """Start the learner and the actors, show progress, wait; whether time stopped it."""
    run_dir = resolved.run_dir
    assert run_dir is not None
    configs = run_dir / "configs"
    learner_file = launch.write_yaml(configs / "learner.yaml", learner_config(resolved))
    actor_files = [
        launch.write_yaml(configs / f"actor-{k}.yaml", actor_config(resolved, k))
        for k in range(resolved.actors)
    ]
    threads = resolved.threads or max(1, (os.cpu_count() or 1) // (1 + resolved.actors))
    processes = launch.launch(run_dir, learner_file, actor_files, threads)
    progress = Progress(console, run_dir / "metrics.jsonl", resolved.learner.max_steps)
    deadline = time.monotonic() + 60 * resolved.max_minutes if resolved.max_minutes else None
    try:
        return launch.supervise(processes, deadline, progress.update)
    finally:
        progress.close()
        processes.stop()
