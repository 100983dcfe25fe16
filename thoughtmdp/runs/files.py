"""The files of a run folder, and readers for them (the learner writes, tools read).

| file | written by | one line or entry per |
|---|---|---|
| ``metrics.jsonl`` | learner | step: the metrics of ``docs/metrics.md`` |
| ``episodes.jsonl`` | learner | episode trained on: groups and reset records |
| ``signal_maps.jsonl`` | learner | logged episode: per-thought gradient signal |
| ``heldout.json`` | ``thoughtmdp train`` | evaluated adapter version: per-problem rewards |
| ``summary.json`` | ``thoughtmdp train`` | the run's summary |
| ``config.yaml`` | ``thoughtmdp train`` | the resolved settings |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
EPISODES_FILE = "episodes.jsonl"
SIGNAL_MAPS_FILE = "signal_maps.jsonl"
HELDOUT_FILE = "heldout.json"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete records of a JSON-lines file (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_heldout(run_dir: Path) -> dict[int, dict[str, Any]]:
    """``heldout.json`` by version (empty when the run has none).

    Each record holds the greedy rollouts (``problem_ids``, ``rewards``, ``well_formed``,
    ``seconds``; ``pass_rate`` in newer runs) and, when the run set ``heldout.samples``,
    ``sampled``: ``samples``, ``temperature``, ``passed`` (per problem, 0/1 per sample),
    ``pass_at_1`` and ``se``.
    """
    path = Path(run_dir) / HELDOUT_FILE
    if not path.exists():
        return {}
    return {int(v): record for v, record in json.loads(path.read_text()).items()}


def step_axes(records: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    """``{step: (rollouts so far, seconds since training started)}``, step 0 included.

    Training starts when the first step began (its end time minus its duration).
    """
    if not records:
        return {0: (0.0, 0.0)}
    start = records[0]["time"] - records[0].get("timing_s/step", 0.0)
    axes, rollouts = {0: (0.0, 0.0)}, 0.0
    for record in records:
        rollouts += record.get("perf/rollouts", 0.0)
        axes[int(record["step"])] = (rollouts, record["time"] - start)
    return axes
