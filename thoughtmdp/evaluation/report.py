"""Tables of evaluation results in the layout of the paper's Table 3.

Tasks are columns and methods rows; every row of a column is scored on the same fixed item
sample. A cell is the mean ± sample SD (``ddof=1``) of the pass rate (or pass@k) over the
row's adapters, one per training seed, in percent; the best mean of each column is bold. A
single policy, such as the base model, shows no SD, like the paper's Base rows. pass@k uses
the unbiased estimator of :func:`~thoughtmdp.runs.stats.pass_at_k` per item, averaged over
items. Below the tables, one line per task says how many items were drawn from what, and
how many rows were left out as training problems.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtmdp.evaluation.benchmark import EvalResult, Run
from thoughtmdp.runs.stats import pass_at_k

MARKDOWN = "results.md"
CSV = "results.csv"
JSON = "results.json"


@dataclass(frozen=True)
class Cell:
    """The runs of one method on one task for one metric.

    Attributes:
        runs: The metric of each run (one per adapter of the row, i.e. per training seed),
            in [0, 1].
        items: Items per run (the task's sample, the same for every run).
    """

    runs: tuple[float, ...]
    items: int

    @property
    def mean(self) -> float:
        """Mean over runs."""
        return sum(self.runs) / len(self.runs)

    @property
    def sd(self) -> float | None:
        """Sample SD over the row's adapters (``ddof=1``); ``None`` for a single policy."""
        if len(self.runs) < 2:
            return None
        return math.sqrt(sum((x - self.mean) ** 2 for x in self.runs) / (len(self.runs) - 1))

    def text(self) -> str:
        """``"25.0 ± 1.5"`` in percent, or ``"25.0"`` for a single run.

        >>> Cell((0.25, 0.27, 0.23), 500).text()
        '25.0 ± 2.0'
        """
        mean = f"{100 * self.mean:.1f}"
        return mean if self.sd is None else f"{mean} ± {100 * self.sd:.1f}"


@dataclass(frozen=True)
class Report:
    """Every cell, by metric, method and task.

    Attributes:
        metrics: Metric names (``"pass@1"``, ``"pass@4"``, ...).
        methods: Row names, in order.
        tasks: Column names, in order.
        cells: ``(metric, method, task)`` -> cell; missing when a method has no run there.
        settings: How the results were produced, for the JSON file.
        notes: One line per task on its item sample (see
            :meth:`~thoughtmdp.evaluation.items.ItemSample.note`).
    """

    metrics: tuple[str, ...]
    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    cells: dict[tuple[str, str, str], Cell]
    settings: dict[str, Any]
    notes: tuple[str, ...] = ()

    def best(self, metric: str, task: str) -> set[str]:
        """The methods with the highest mean in a column (all of them on a tie)."""
        means = {
            m: round(c.mean, 12)
            for m in self.methods
            if (c := self.cells.get((metric, m, task))) is not None
        }
        top = max(means.values(), default=None)
        return {m for m, v in means.items() if v == top}


def run_value(result: EvalResult, run: Run, samples: int, k: int) -> float:
    """pass@k of one run: the unbiased estimate per item, averaged over its items.

    Args:
        result: The records.
        run: The run.
        samples: Rollouts per item (n).
        k: The k of pass@k (``k <= samples``).

    Returns:
        The mean over the run's items.
    """
    values = []
    for problem_id in run.problem_ids:
        keys = [(run.adapter or "", run.task, problem_id, s) for s in range(samples)]
        passed = sum(result.records[key].passed for key in keys)
        values.append(pass_at_k(samples, passed, k))
    return sum(values) / len(values)


def build_report(
    result: EvalResult, ks: Sequence[int], samples: int, settings: dict[str, Any]
) -> Report:
    """The cells of every metric from an evaluation's runs and records.

    Args:
        result: What :func:`~thoughtmdp.evaluation.benchmark.evaluate` returned.
        ks: The k values to report (each at most ``samples``).
        samples: Rollouts per item.
        settings: Stored with the report.

    Returns:
        The report; its settings gain ``items``, the sample of each task.
    """
    drawn = {
        name: {
            "sample_seed": sample.seed,
            "pool": sample.pool,
            "excluded": sample.excluded,
            "training_problems": sample.training,
            "training_task": sample.training_task,
            "items": len(sample.problems),
        }
        for name, sample in result.samples.items()
    }
    notes = tuple(sample.note(name) for name, sample in result.samples.items())
    methods = tuple(dict.fromkeys(r.method for r in result.runs))
    tasks = tuple(dict.fromkeys(r.task for r in result.runs))
    metrics = tuple(f"pass@{k}" for k in ks)
    cells = {}
    for k, metric in zip(ks, metrics, strict=True):
        for method in methods:
            for task in tasks:
                runs = [r for r in result.runs if r.method == method and r.task == task]
                if runs:
                    values = tuple(run_value(result, r, samples, k) for r in runs)
                    items = max(len(r.problem_ids) for r in runs)
                    cells[(metric, method, task)] = Cell(values, items)
    return Report(metrics, methods, tasks, cells, {**settings, "items": drawn}, notes)


def to_markdown(report: Report) -> str:
    """One Table-3-style Markdown table per metric, best per column in bold, then the notes.

    >>> cells = {("pass@1", "base", "csqa"): Cell((0.5,), 3)}
    >>> cells["pass@1", "srpo", "csqa"] = Cell((0.6, 0.8), 3)
    >>> print(to_markdown(Report(("pass@1",), ("base", "srpo"), ("csqa",), cells, {})))
    ### pass@1 (%)
    <BLANKLINE>
    | Method | csqa |
    |---|---|
    | base | 50.0 |
    | srpo | **70.0 ± 14.1** |
    <BLANKLINE>
    """
    parts = []
    for metric in report.metrics:
        lines = [
            f"### {metric} (%)",
            "",
            "| Method | " + " | ".join(report.tasks) + " |",
            "|---|" + "---|" * len(report.tasks),
        ]
        for method in report.methods:
            row = [_cell_text(report, metric, method, task, "**{}**") for task in report.tasks]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        parts.append("\n".join(lines) + "\n")
    if report.notes:
        parts.append(
            "Mean ± SD over each row's adapters (one per training seed); a single policy, such "
            "as the base model, has no SD. Items per task, the same for every row:\n\n"
            + "".join(f"- {note}\n" for note in report.notes)
        )
    return "\n".join(parts)


def to_csv(report: Report) -> str:
    """One line per metric, method and task: ``mean``, ``sd`` (percent), runs (adapters), items."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["metric", "method", "task", "mean", "sd", "runs", "items", "best"])
    for (metric, method, task), cell in report.cells.items():
        sd = "" if cell.sd is None else f"{100 * cell.sd:.2f}"
        best = method in report.best(metric, task)
        writer.writerow(
            [metric, method, task, f"{100 * cell.mean:.2f}", sd, len(cell.runs), cell.items, best]
        )
    return out.getvalue()


def to_json(report: Report) -> dict[str, Any]:
    """The report as plain data: settings, notes, and the run values of every cell.

    A cell's ``runs`` hold one value per adapter, in the order of ``settings["methods"]``.
    """
    results: dict[str, Any] = {}
    for (metric, method, task), cell in report.cells.items():
        results.setdefault(metric, {}).setdefault(method, {})[task] = {
            "mean": cell.mean,
            "sd": cell.sd,
            "runs": list(cell.runs),
            "items": cell.items,
            "best": method in report.best(metric, task),
        }
    return {
        "settings": report.settings,
        "tasks": list(report.tasks),
        "notes": list(report.notes),
        "results": results,
    }


def to_rich(report: Report, metric: str) -> Any:
    """A ``rich`` table of one metric, best per column in bold."""
    from rich.table import Table

    table = Table(title=f"{metric} (%)")
    table.add_column("Method")
    for task in report.tasks:
        table.add_column(task, justify="right")
    for method in report.methods:
        cells = [_cell_text(report, metric, method, t, "[bold]{}[/bold]") for t in report.tasks]
        table.add_row(method, *cells)
    return table


def write_report(report: Report, folder: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and ``results.json`` to ``folder``.

    Returns:
        The paths written.
    """
    folder = Path(folder)
    paths = [folder / MARKDOWN, folder / CSV, folder / JSON]
    paths[0].write_text(to_markdown(report), encoding="utf-8")
    paths[1].write_text(to_csv(report), encoding="utf-8")
    paths[2].write_text(json.dumps(to_json(report), indent=2) + "\n", encoding="utf-8")
    return paths


def _cell_text(report: Report, metric: str, method: str, task: str, bold: str) -> str:
    cell = report.cells.get((metric, method, task))
    if cell is None:
        return "–"
    return bold.format(cell.text()) if method in report.best(metric, task) else cell.text()
