"""Per-item evaluation records: ``records.jsonl`` and the settings they were made with.

Records are appended, one JSON object a line, as soon as an item is graded, so an
interrupted evaluation resumes where it stopped; ``eval_config.json`` holds the settings the
records depend on, and a run with other settings is refused instead of mixing results.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thoughtmdp.errors import ThoughtMDPError

RECORDS = "records.jsonl"
CONFIG = "eval_config.json"

RecordKey = tuple[str, str, str, int]  # (adapter or "", task, problem id, sample)


class ResumeMismatch(ThoughtMDPError, ValueError):
    """The output folder holds records made with other settings."""


@dataclass(frozen=True)
class ItemRecord:
    """One graded rollout, as stored in ``records.jsonl``.

    Attributes:
        method: The report row that first asked for it.
        adapter: Adapter folder; ``None`` for the base model.
        task: The suite's task name.
        problem_id: The item.
        sample: Index of the rollout among the item's samples.
        thoughts: The thought texts.
        answer: The answer the verifier read.
        gold: The gold answer.
        reward: The verifier's reward (0 when truncated).
        passed: ``reward >= PASS_REWARD``.
        terminated: The chain reached a final answer.
        truncated: The chain hit a cap.
        reason: Why it failed, as the verifier or the caps tell.
    """

    method: str
    adapter: str | None
    task: str
    problem_id: str
    sample: int
    thoughts: tuple[str, ...]
    answer: str | None
    gold: str
    reward: float
    passed: bool
    terminated: bool
    truncated: bool
    reason: str | None = None

    @property
    def key(self) -> RecordKey:
        """What identifies the rollout across runs."""
        return (self.adapter or "", self.task, self.problem_id, self.sample)


class RecordStore:
    """``records.jsonl`` and ``eval_config.json`` of an output folder.

    Args:
        folder: The output folder (created if missing).
        fingerprint: Settings the stored records must share (model, sampling, task data).

    Raises:
        ResumeMismatch: If the folder's records were made with different settings.
    """

    def __init__(self, folder: str | Path, fingerprint: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / RECORDS
        config = self.folder / CONFIG
        stored = json.loads(config.read_text()) if config.exists() else {}
        merged = _check_fingerprint(stored, json.loads(json.dumps(fingerprint)), self.folder)
        config.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")

    def load(self) -> dict[RecordKey, ItemRecord]:
        """The stored records; a line cut short by a crash is ignored."""
        records: dict[RecordKey, ItemRecord] = {}
        if not self.path.exists():
            return records
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, TypeError):
                data = json.loads(line)
                record = ItemRecord(**{**data, "thoughts": tuple(data["thoughts"])})
                records[record.key] = record
        return records

    def append(self, record: ItemRecord) -> None:
        """Add one record (written and flushed at once)."""
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")


BEFORE_THE_SETTING = {"chat_template": "none"}
"""What records written before a setting existed were made with (prompts were raw text)."""


def _check_fingerprint(stored: dict[str, Any], new: dict[str, Any], folder: Path) -> dict[str, Any]:
    merged = dict(stored)
    stored = {**BEFORE_THE_SETTING, **stored} if stored else stored
    for key, value in new.items():
        if key == "tasks":
            tasks = dict(stored.get("tasks", {}))
            for name, options in value.items():
                if name in tasks and tasks[name] != options:
                    raise ResumeMismatch(
                        f"{folder}: task {name!r} was evaluated with {tasks[name]}, now "
                        f"{options}; use a new --out folder or the same task settings"
                    )
                tasks[name] = options
            merged["tasks"] = tasks
        elif key in stored and stored[key] != value:
            raise ResumeMismatch(
                f"{folder}: records were made with {key}={stored[key]!r}, this run has "
                f"{key}={value!r}; use a new --out folder or the same setting"
            )
        else:
            merged[key] = value
    return merged
