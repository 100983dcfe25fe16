"""Live progress of a run, read from the learner's ``metrics.jsonl`` as it grows.

On a terminal a rich live panel shows the step, episodes per second, the reward, the reset
group's pass rate, the loss and the staleness lag; elsewhere (a log, CI) one plain line is
printed every ``every`` steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WINDOW = 10  # steps averaged for the reward columns


@dataclass
class MetricsTail:
    """Reads the records appended to a ``metrics.jsonl`` since the last call.

    Attributes:
        path: The file (it may not exist yet).
        records: Every complete record read so far.
    """

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    def poll(self) -> list[dict[str, Any]]:
        """The records completed since the last call (a half-written last line waits)."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        new = [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
        self.records += new
        return new


def snapshot(
    records: list[dict[str, Any]], started: float, max_steps: int | None
) -> dict[str, Any]:
    """The numbers the progress display shows, from the records so far.

    Args:
        records: The learner's metric records.
        started: ``time.time()`` when the training phase started.
        max_steps: The learner's step budget (``None``: unbounded).

    Returns:
        ``step``, ``max_steps``, ``elapsed_s``, ``episodes``, ``episodes_per_s`` and, once
        there are steps, windowed means of ``reward``, ``reset_pass_rate``, ``loss`` and the
        last ``lag``.
    """
    elapsed = time.time() - started
    episodes = sum(_episodes(r) for r in records)
    view: dict[str, Any] = {
        "step": records[-1]["step"] if records else 0,
        "max_steps": max_steps,
        "elapsed_s": elapsed,
        "episodes": episodes,
        "episodes_per_s": episodes / elapsed if elapsed > 0 else 0.0,
    }
    recent = records[-WINDOW:]
    for name, key in (
        ("reward", "critic/score/mean"),
        ("reset_pass_rate", "reset/suffix_pass_rate"),
        ("loss", "actor/pg_loss"),
    ):
        values = [r[key] for r in recent if key in r]
        if values:
            view[name] = sum(values) / len(values)
    if records:
        view["lag"] = records[-1].get("staleness/lag/max", 0.0)
    return view


def _episodes(record: dict[str, Any]) -> float:
    return float(sum(v for k, v in record.items() if k.startswith("learner/episodes/")))


def progress_line(view: dict[str, Any]) -> str:
    """One plain line of a snapshot, e.g. for logs."""
    steps = f"{view['step']}/{view['max_steps']}" if view["max_steps"] else str(view["step"])
    parts = [
        f"step {steps}",
        f"{view['elapsed_s']:.0f}s",
        f"{view['episodes_per_s']:.2f} episodes/s",
    ]
    for name, label in (("reward", "reward"), ("reset_pass_rate", "reset pass"), ("lag", "lag")):
        if name in view:
            parts.append(f"{label} {view[name]:.3g}")
    return " | ".join(parts)


class Progress:
    """Shows a run's progress on a rich console until closed.

    Args:
        console: A ``rich.console.Console``.
        metrics: The learner's ``metrics.jsonl``.
        max_steps: The learner's step budget.
        every: Steps between plain lines when the console is not a terminal.
    """

    def __init__(self, console: Any, metrics: Path, max_steps: int | None, every: int = 10):
        self.console, self.max_steps, self.every = console, max_steps, every
        self.tail = MetricsTail(metrics)
        self.started = time.time()
        self._printed = 0
        self._live: Any = None
        if console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=console, refresh_per_second=4)
            self._live.start()

    def update(self) -> None:
        """Read new metrics and refresh the display."""
        self.tail.poll()
        view = snapshot(self.tail.records, self.started, self.max_steps)
        if self._live is not None:
            self._live.update(self._render(view))
        elif view["step"] >= self._printed + self.every:
            self._printed = view["step"]
            self.console.print(progress_line(view))

    def close(self) -> None:
        """Stop the live display (the last state stays on screen)."""
        self.update()
        if self._live is not None:
            self._live.stop()

    def _render(self, view: dict[str, Any] | None = None) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        view = view or snapshot([], self.started, self.max_steps)
        table = Table.grid(padding=(0, 2))
        total = self.max_steps or max(view["step"], 1)
        table.add_row(
            ProgressBar(total=total, completed=view["step"], width=30), progress_line(view)
        )
        return table
