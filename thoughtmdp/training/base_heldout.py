"""The embedded policy's own held-out record, kept beside it and shared by every run.

Version 0 of a run is the base model, so every run of a sweep (methods, seeds, learning rates)
would evaluate the same model on the same problems with the same seeded samples. For the
embedded policy, which lives in the cache folder its recipe names, the record is stored
there under a key made of everything that decides it (task, its options, the evaluation
settings, the backend), and later runs read it instead of evaluating again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from thoughtmdp.settings.convert import to_dict
from thoughtmdp.settings.train import TrainConfig

FOLDER = "heldout"


def base_record_path(resolved: TrainConfig) -> Path | None:
    """Where the base model's record of this run's evaluation is kept.

    ``None`` for a user's model: it may be read-only, or change under the same path.
    """
    if not resolved.embedded or not resolved.learner.model:
        return None
    actor, heldout = resolved.actor, resolved.heldout
    decided_by = {
        "task": actor.task,
        "task_options": actor.task_options,
        "heldout": {k: v for k, v in to_dict(heldout).items() if k != "versions"},
        "greedy": to_dict(heldout.eval_settings(actor)),
        "sampled": to_dict(heldout.sampled_eval_settings(actor)) if heldout.samples else None,
    }
    text = json.dumps(decided_by, sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Path(resolved.learner.model) / FOLDER / f"{key}.json"


def read_base_record(path: Path | None) -> dict[str, Any] | None:
    """The stored record, or ``None`` when there is none."""
    if path is None or not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def write_base_record(path: Path | None, record: dict[str, Any]) -> None:
    """Store a record atomically (a reader never sees half of one)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{id(record)}.tmp")
    partial.write_text(json.dumps(record) + "\n")
    partial.replace(path)
