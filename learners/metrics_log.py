"""The learner's metrics: one JSON line per step in ``metrics.jsonl``, and TensorBoard.

Every name it logs, and what it means, is in ``docs/metrics.md`` ("Learner").
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from thoughtmdp.runs.files import METRICS_FILE, read_jsonl

logger = logging.getLogger(__name__)


class MetricsLog:
    """Appends each step's metrics to ``run_dir/metrics.jsonl`` and TensorBoard.

    TensorBoard events go to ``run_dir/tensorboard`` when the ``tensorboard`` package is
    installed; without it a single warning says so and only the JSON lines are written.

    Args:
        run_dir: The run folder.
        tensorboard: Also write TensorBoard events when possible.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        self._writer: Any = _tensorboard(Path(run_dir) / "tensorboard") if tensorboard else None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Record one step's metrics."""
        record = {"step": step, "time": time.time(), **metrics}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def close(self) -> None:
        """Close the files."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _tensorboard(folder: Path) -> Any:
    if importlib.util.find_spec("tensorboard") is None:  # SummaryWriter needs it
        logger.warning("tensorboard is not installed; writing metrics.jsonl only")
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    return read_jsonl(Path(run_dir) / METRICS_FILE)
