"""``thoughtmdp train``: model, held-out baseline, learner and actors, evaluation, summary, plots.

The phases run one after the other, so each has the machine to itself and its time is its
own: (1) the embedded policy is built or found in the cache, (2) the base model is evaluated
on the held-out problems, (3) the learner and the actors train until ``learner.max_steps``
or the time budget, (4) adapter versions are evaluated on the same problems, (5) the summary
and the plots are written. Every phase's output lands in the run folder as it is produced.

A run stopped by SIGINT, SIGTERM or SIGHUP stops its processes (the learner checkpoints),
writes the summary so far and the plots, and prints the command that continues it:
``thoughtmdp train --resume RUN_DIR``. A resumed run reuses the folder's config and its
held-out record of version 0, and trains on from the newest checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.runs.files import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, read_jsonl
from thoughtmdp.runs.progress import Progress
from thoughtmdp.runs.summary import print_summary, write_summary
from thoughtmdp.settings.learner import check_trackers
from thoughtmdp.settings.train import (
    TrainConfig,
    actor_config,
    default_run_dir,
    learner_config,
    method_name,
    resolve,
)
from thoughtmdp.training import launch, run_folder
from thoughtmdp.training.heldout import HeldoutEvaluator, versions_to_evaluate
from thoughtmdp.training.placement import Placement, plan
from thoughtmdp.training.stopping import Interrupted, StopSignals

__all__ = ["HeldoutEvaluator", "train"]


def train(config: TrainConfig, console: Any, resume: bool = False) -> dict[str, Any]:
    """Run every phase of a training run; returns the summary.

    Args:
        config: A validated train config (not yet resolved).
        console: A ``rich.console.Console`` for progress and the summary.
        resume: Continue the run in ``config.run_dir`` from its newest checkpoint (also
            when ``learner.resume`` is set).

    Returns:
        The summary (also written to ``run_dir/summary.json``).

    Raises:
        ConfigError: If a tracker of ``learner.report_to`` is not installed.
        ThoughtMDPError: If a new run would go into a folder that holds one, or another
            process trains into the folder.
        ProcessFailed: If the learner or an actor died, or no step was trained.
        Interrupted: After a clean stop by a signal (the summary so far is written).
    """
    check_trackers(config.learner)
    placement = None
    if config.launcher == "local":
        placement = plan(config.placement, config.learner.num_processes, config.actors)
    run_dir = Path(config.run_dir or default_run_dir(config))
    resume = resume or config.learner.resume
    if not resume:
        run_folder.refuse_existing(run_dir)
    held = run_folder.lock(run_dir)
    try:
        with StopSignals():
            return _run(replace(config, run_dir=run_dir), resume, console, placement)
    finally:
        held.close()


def _run(
    config: TrainConfig, resume: bool, console: Any, placement: Placement | None
) -> dict[str, Any]:
    run_dir = config.run_dir
    assert run_dir is not None
    if resume:
        config = replace(config, learner=replace(config.learner, resume=True))
        _check_steps_left(run_dir, config.learner.max_steps)
    else:
        launch.write_yaml(run_dir / run_folder.TRAIN_CONFIG, config)
    resolved = resolve(config, run_dir, _bind(config))
    timings: dict[str, float] = {}
    _announce(resolved, console, placement)
    started = time.perf_counter()
    state = _RunState(resolved, console, started)
    try:
        state.warm_start = _ensure_model(resolved, console)
        timings["model_s"] = time.perf_counter() - started
        launch.write_yaml(run_dir / CONFIG_FILE, resolved)
        evaluate = state.evaluate = HeldoutEvaluator(resolved, console)
        phase = time.perf_counter()
        if not (resume and evaluate.reuse_recorded()):
            evaluate([0])
        timings["heldout_before_s"] = time.perf_counter() - phase
        phase = time.perf_counter()
        steps_before = len(read_jsonl(run_dir / METRICS_FILE))
        state.stopped_by_time = _train(resolved, console, placement)
        timings["training_s"] = time.perf_counter() - phase
        _check_trained(resolved, steps_before, state.stopped_by_time)
        phase = time.perf_counter()
        later = versions_to_evaluate(run_dir, resolved.heldout.versions)
        evaluate([v for v in later if v not in evaluate.results])
        timings["heldout_after_s"] = time.perf_counter() - phase
    except Interrupted as exc:
        state.finish(timings, stopped_by=exc.signum)
        console.print(  # one line, whatever the width: it is copied into a shell
            f"stopped by {exc}; continue the run with: thoughtmdp train --resume {run_dir}",
            soft_wrap=True,
        )
        raise
    return state.finish(timings)


class _RunState:
    """What a run has produced so far, to summarise at its end or when it is stopped."""

    def __init__(self, resolved: TrainConfig, console: Any, started: float) -> None:
        self.resolved, self.console, self.started = resolved, console, started
        self.warm_start: dict[str, Any] | None = None
        self.evaluate: HeldoutEvaluator | None = None
        self.stopped_by_time = False

    def finish(self, timings: dict[str, float], stopped_by: int | None = None) -> dict[str, Any]:
        """Write the summary and the plots, print the summary; returns it."""
        resolved, console = self.resolved, self.console
        run_dir = resolved.run_dir
        assert run_dir is not None
        results = self.evaluate.results if self.evaluate is not None else {}
        summary = write_summary(resolved, results, self.warm_start, timings, self.stopped_by_time)
        if stopped_by is not None:
            summary["stopped_by_signal"] = stopped_by
        if resolved.plots and (run_dir / METRICS_FILE).exists():
            phase = time.perf_counter()
            from thoughtmdp.runs.plots import plot_runs

            summary["plots"] = [str(p) for p in plot_runs([run_dir], run_dir / "plots")]
            _plots_to_trackers(run_dir, summary["plots"], console)
            timings["plots_s"] = time.perf_counter() - phase
        timings["total_s"] = time.perf_counter() - self.started
        summary["timings"] = {k: round(v, 1) for k, v in timings.items()}
        (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        print_summary(summary, console)
        return summary


def _check_steps_left(run_dir: Path, max_steps: int | None) -> None:
    done = run_folder.checkpoint_step(run_dir)
    if max_steps is not None and done >= max_steps:
        raise ThoughtMDPError(
            f"{run_dir} already trained {done} of learner.max_steps={max_steps} steps; "
            "raise learner.max_steps to train further"
        )


def _check_trained(resolved: TrainConfig, steps_before: int, stopped_by_time: bool) -> None:
    """Raise :class:`~launch.ProcessFailed` when the learner finished no step."""
    assert resolved.run_dir is not None
    if len(read_jsonl(resolved.run_dir / METRICS_FILE)) > steps_before:
        return
    if stopped_by_time:
        reason = (
            f"the time budget (max_minutes={resolved.max_minutes:g}) ran out before the "
            "first step; raise max_minutes"
        )
    else:
        reason = f"the learner exited before its first step; see {resolved.run_dir / 'logs'}"
    raise launch.ProcessFailed(f"no step was trained: {reason}")


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


def _ray_address() -> str:
    return os.environ.get("RAY_ADDRESS") or "a new local Ray instance"


def _announce(resolved: TrainConfig, console: Any, placement: Placement | None) -> None:
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
    if placement is None:
        console.print(f"launcher: ray ({_ray_address()})")
    else:
        for slot in (placement.learner, *placement.actors):
            console.print(f"placement: {slot.describe()}")
    if backend == "vllm" and launch.CPU_BIND_ENV in os.environ:
        bind = os.environ[launch.CPU_BIND_ENV]
        console.print(f"vLLM CPU thread binding: {launch.CPU_BIND_ENV}={bind}")
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


def _train(resolved: TrainConfig, console: Any, placement: Placement | None) -> bool:
    """Start the learner and the actors, show progress, wait; whether time stopped it."""
    run_dir = resolved.run_dir
    assert run_dir is not None
    if placement is None:
        from thoughtmdp.training import ray_launcher

        processes: Any = ray_launcher.launch_on_ray(resolved)
        supervise: Callable[..., bool] = ray_launcher.supervise_on_ray
    else:
        configs = run_dir / "configs"
        learner_file = launch.write_yaml(configs / "learner.yaml", learner_config(resolved))
        actor_files = [
            launch.write_yaml(configs / f"actor-{k}.yaml", actor_config(resolved, k))
            for k in range(resolved.actors)
        ]
        processes = launch.launch(run_dir, learner_file, actor_files, placement, resolved.threads)
        supervise = launch.supervise
    progress = Progress(console, run_dir / "metrics.jsonl", resolved.learner.max_steps)
    deadline = time.monotonic() + 60 * resolved.max_minutes if resolved.max_minutes else None
    signum: int = signal.SIGTERM
    try:
        return bool(supervise(processes, deadline, progress.update))
    except Interrupted as exc:
        signum = exc.signum  # passed on to the learner and the actors
        raise
    finally:
        progress.close()
        processes.stop(signum)
