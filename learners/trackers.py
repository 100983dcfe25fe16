"""Experiment trackers the learner reports to (``learner.report_to``), each through its own API.

TensorBoard, Weights & Biases, MLflow and trackio get every step's metrics under the names of
``metrics.jsonl`` and the resolved config as the run's parameters. Each package is imported
only when its tracker is chosen. A tracker records how to find its run again in
``run_dir/trackers.json``: a resumed learner goes on with the same run, and ``thoughtmdp
train`` adds the plots it draws at the end (:func:`log_plots`).

>>> open_trackers(Path("runs/none"), report_to=())
[]
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from thoughtmdp.errors import require
from thoughtmdp.settings.learner import TrackingSettings

logger = logging.getLogger(__name__)

TRACKERS_FILE = "trackers.json"


class Tracker:
    """One experiment tracker's run: ``log`` a step's metrics, ``close`` at the end."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record one step's metrics."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the run."""


def open_trackers(
    run_dir: Path,
    report_to: Sequence[str] = ("tensorboard",),
    settings: TrackingSettings | None = None,
    params: Mapping[str, Any] | None = None,
) -> list[Tracker]:
    """Start (or, with a record in ``trackers.json``, continue) a run in every tracker.

    Args:
        run_dir: The run folder.
        report_to: Tracker names (``learner.report_to``).
        settings: Project, run name and tracker options (default: the defaults).
        params: The resolved config, logged as the run's parameters.

    Returns:
        The open trackers (TensorBoard is left out, with a warning, when not installed).

    Raises:
        DependencyNotInstalled: If a chosen tracker's package is missing.
    """
    settings = settings or TrackingSettings()
    saved = _read_records(run_dir)
    params = dict(params or {})
    trackers: list[Tracker] = []
    try:
        for name in report_to:
            if name == "tensorboard":
                if importlib.util.find_spec("tensorboard") is None:  # SummaryWriter needs it
                    logger.warning("tensorboard is not installed; not writing TensorBoard events")
                    continue
                trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
                continue
            require(name, name)
            tracker, record = OPENERS[name](run_dir, settings, params, saved.get(name))
            trackers.append(tracker)
            saved[name] = record
            _write_records(run_dir, saved)
    except BaseException:
        for tracker in trackers:  # the ones already open would otherwise stay open
            tracker.close()
        raise
    return trackers


def log_plots(run_dir: Path, plots: Sequence[Path]) -> list[str]:
    """Add plot images to the tracker runs the learner recorded in ``trackers.json``.

    A tracker that fails (its server gone, its package removed) is logged and skipped: the
    plots are on disk anyway.

    Args:
        run_dir: The run folder.
        plots: PNG files.

    Returns:
        The trackers that received the plots.
    """
    done = []
    for name, record in _read_records(run_dir).items():
        if not plots or name not in PLOTTERS:
            continue
        try:
            PLOTTERS[name](record, [Path(p) for p in plots])
        except Exception:
            logger.exception("could not add the plots to the %s run", name)
            continue
        done.append(name)
    return done


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``{"optim.lr": "5e-05"}`` (trackers with flat string parameters).

    >>> flat_params({"optim": {"lr": 5e-05, "betas": [0.9, 0.999]}, "model": ""})
    {'optim.lr': '5e-05', 'optim.betas': '[0.9, 0.999]', 'model': ''}
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, name + "."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


class TensorBoardTracker(Tracker):
    """Events under ``run_dir/tensorboard`` (torch's ``SummaryWriter``)."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:  # noqa: D102
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:  # noqa: D102
        self.writer.close()


class RunTracker(Tracker):
    """A W&B or trackio run: both have ``log(metrics, step=)`` and ``finish()``.

    W&B's files go to ``run_dir/wandb`` (offline runs sync with ``wandb sync``); trackio's
    project is local SQLite, or the Space of ``TRACKIO_SPACE_ID``.
    """

    def __init__(self, run: Any) -> None:
        self.run = run

    def log(self, step: int, metrics: Mapping[str, float]) -> None:  # noqa: D102
        self.run.log(dict(metrics), step=step)

    def close(self) -> None:  # noqa: D102
        self.run.finish()


def _open_wandb(
    run_dir: Path, settings: TrackingSettings, params: dict[str, Any], saved: Any
) -> tuple[Tracker, dict[str, Any]]:
    import wandb

    run = wandb.init(
        project=settings.project,
        entity=settings.wandb_entity,
        name=settings.run_name or run_dir.resolve().name,
        dir=str(run_dir),
        mode=settings.wandb_mode,  # None: WANDB_MODE, else W&B's default
        id=saved["id"] if saved else None,
        resume="allow" if saved else None,
        config=params,
    )
    mode = "disabled" if run.disabled else "offline" if run.offline else "online"
    record = {"id": run.id, "project": settings.project, "entity": settings.wandb_entity}
    return RunTracker(run), {**record, "mode": mode, "dir": str(run_dir.resolve())}


def _wandb_plots(record: dict[str, Any], plots: list[Path]) -> None:
    if record["mode"] == "disabled":
        return
    import wandb

    run = wandb.init(
        id=record["id"],
        project=record["project"],
        entity=record["entity"],
        dir=record["dir"],
        mode=record["mode"],
        resume="allow",
    )
    try:
        run.log({f"plots/{path.stem}": wandb.Image(str(path)) for path in plots})
    finally:
        run.finish()


class MlflowTracker(Tracker):
    """An MLflow run in the experiment ``tracking.project``, through ``MlflowClient``."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log(self, step: int, metrics: Mapping[str, float]) -> None:  # noqa: D102
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self) -> None:  # noqa: D102
        self.client.set_terminated(self.run_id)


def _open_mlflow(
    run_dir: Path, settings: TrackingSettings, params: dict[str, Any], saved: Any
) -> tuple[Tracker, dict[str, Any]]:
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)  # None: the env var
    if saved and saved["tracking_uri"] == str(client.tracking_uri):
        run_id = saved["run_id"]  # parameters are immutable in MLflow: logged once
        client.update_run(run_id, status="RUNNING")
    else:
        found = client.get_experiment_by_name(settings.project)
        experiment = found.experiment_id if found else client.create_experiment(settings.project)
        name = settings.run_name or run_dir.resolve().name
        run_id = client.create_run(experiment, run_name=name).info.run_id
        flat = flat_params(params)
        client.log_batch(run_id, params=[Param(k, v) for k, v in flat.items()])
    record = {"run_id": run_id, "tracking_uri": str(client.tracking_uri)}
    return MlflowTracker(client, run_id), record


def _mlflow_plots(record: dict[str, Any], plots: list[Path]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=record["tracking_uri"])
    for path in plots:
        client.log_artifact(record["run_id"], str(path), "plots")


def _open_trackio(
    run_dir: Path, settings: TrackingSettings, params: dict[str, Any], saved: Any
) -> tuple[Tracker, dict[str, Any]]:
    import trackio

    name = saved["name"] if saved else settings.run_name or run_dir.resolve().name
    run = trackio.init(
        project=settings.project,
        name=name,
        config=params,
        resume="allow" if saved else "never",
        embed=False,
        auto_log_cpu=False,  # the metrics are the learner's; no background sampling
        auto_log_gpu=False,
    )
    return RunTracker(run), {"project": settings.project, "name": run.name}


def _trackio_plots(record: dict[str, Any], plots: list[Path]) -> None:
    import trackio

    # Resuming a trackio run replaces its config: hand the stored one back.
    runs = [r for r in trackio.Api().runs(record["project"]) if r.name == record["name"]]
    stored = (runs[-1].config or {}) if runs else {}
    run = trackio.init(
        project=record["project"],
        name=record["name"],
        config={k: v for k, v in stored.items() if not k.startswith("_")},  # _: trackio's own
        resume="must",
        embed=False,
        auto_log_cpu=False,
        auto_log_gpu=False,
    )
    try:
        run.log({f"plots/{path.stem}": trackio.Image(path) for path in plots})
    finally:
        run.finish()


OPENERS = {"wandb": _open_wandb, "mlflow": _open_mlflow, "trackio": _open_trackio}
PLOTTERS = {"wandb": _wandb_plots, "mlflow": _mlflow_plots, "trackio": _trackio_plots}


def _read_records(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / TRACKERS_FILE
    if not path.exists():
        return {}
    records: dict[str, Any] = json.loads(path.read_text())
    return records


def _write_records(run_dir: Path, records: dict[str, Any]) -> None:
    path = Path(run_dir) / TRACKERS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")
