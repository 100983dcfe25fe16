"""The learner's metrics: one JSON line per step in ``metrics.jsonl``, and TensorBoard.

| name | meaning |
|---|---|
| ``actor/pg_loss`` | the policy-gradient loss, mean over the step's mini-batches |
| ``actor/grad_norm`` | gradient L2 norm before clipping, mean over mini-batches |
| ``actor/lr`` | learning rate |
| ``actor/pg_clipfrac`` | share of active tokens whose ratio was clipped (``loss.clip_eps``) |
| ``actor/is_weight/mean`` | mean truncated importance weight (``loss.is_cap``) |
| ``perf/total_num_tokens`` | tokens of the step's rollouts (prompt, prefix and sampled) |
| ``perf/rollouts`` | rollouts (samples) in the step's episodes |
| ``perf/throughput`` | ``perf/total_num_tokens`` per second of ``timing_s/step`` per rank |
| ``timing_s/update_actor`` | forward, backward and optimiser steps |
| ``timing_s/update_weights`` | gathering, saving and publishing the adapter |
| ``timing_s/step`` | the whole step, waiting for episodes included |
| ``response_length/mean`` | sampled tokens per rollout (a reset rollout: its suffix) |
| ``critic/score/mean`` | reward of base-group rollouts (and the other ``reset/`` metrics) |
| ``signal/base_mean`` | mean over base rollouts with ``A_i != 0`` of ``mean_t g_it`` |
| ``signal/reset_mean`` | the same over reset rollouts |
| ``signal/reset_to_base`` | ``signal/reset_mean / signal/base_mean`` (paper App. 14) |
| ``staleness/skipped`` | episodes dropped as older than ``max_lag`` versions, this step |
| ``staleness/reweighted`` | stale episodes kept with truncated importance weights |
| ``staleness/lag/max`` | largest version lag among the step's episodes |
| ``learner/version`` | adapter version published at the end of the step |
| ``learner/episodes/<actor>`` | episodes the step took from each actor |

``g_it = (|A_i| / T_i)(1 - pi(y_it))`` is the size of the loss gradient on the sampled token's
logit; the signal means are over the whole step rather than per prompt as in the paper.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from thoughtmdp.run_files import METRICS_FILE, read_jsonl

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
