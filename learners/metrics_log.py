"""The learner's metrics: one JSON line per step in ``metrics.jsonl``, and the trackers.

The trackers are those of ``learner.report_to`` (TensorBoard by default; W&B, MLflow,
trackio: :mod:`thoughtmdp.learners.trackers`). Every name it logs, and what it means, is in
``docs/metrics.md`` ("Learner").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thoughtmdp.learners.trackers import open_trackers
from thoughtmdp.runs.files import CONFIG_FILE, METRICS_FILE, read_jsonl
from thoughtmdp.settings.convert import parse_yaml, to_dict
from thoughtmdp.settings.learner import LearnerConfig, TrackingSettings

logger = logging.getLogger(__name__)


class MetricsLog:
    """Appends each step's metrics to ``run_dir/metrics.jsonl`` and reports them to trackers.

    TensorBoard events go to ``run_dir/tensorboard`` when the ``tensorboard`` package is
    installed; without it a single warning says so and only the JSON lines are written.

    Args:
        run_dir: The run folder.
        report_to: Experiment trackers (``learner.report_to``).
        tracking: Their project, run name and options (``learner.tracking``).
        params: The resolved config, the trackers' run parameters.
    """

    def __init__(
        self,
        run_dir: Path,
        report_to: Sequence[str] = ("tensorboard",),
        tracking: TrackingSettings | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.trackers = open_trackers(Path(run_dir), report_to, tracking, params)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    @classmethod
    def for_config(cls, config: LearnerConfig) -> MetricsLog:
        """The metrics log of a learner: its trackers, with :func:`run_params` as parameters."""
        return cls(config.run_dir, config.report_to, config.tracking, run_params(config))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Record one step's metrics."""
        record = {"step": step, "time": time.time(), **metrics}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for tracker in self.trackers:
            tracker.log(step, metrics)

    def close(self) -> None:
        """Close the file and finish the trackers' runs."""
        self._file.close()
        for tracker in self.trackers:
            tracker.close()


def run_params(config: LearnerConfig) -> dict[str, Any]:
    """What the trackers record as the run's parameters: the resolved config.

    That is the whole run's ``config.yaml`` when ``thoughtmdp train`` wrote one into the run
    folder (the learner's settings are its ``learner`` section), else the learner's settings.
    """
    path = Path(config.run_dir) / CONFIG_FILE
    if path.is_file():
        data = parse_yaml(path.read_text())
        if isinstance(data, dict):
            return data
    return json.loads(json.dumps(to_dict(config), default=str))  # paths as strings


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    return read_jsonl(Path(run_dir) / METRICS_FILE)
