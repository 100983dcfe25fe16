"""The warm start seen by a person: a progress bar while it builds, then its report as a table."""

from __future__ import annotations

from typing import Any

from thoughtmdp.settings.warmstart import WarmStartRecipe, model_folder


def warm_start_with_progress(
    recipe: WarmStartRecipe, console: Any, rebuild: bool = False
) -> dict[str, Any]:
    """The recipe's model from the cache, or built now with a progress bar; its report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from thoughtmdp.agents.warmstart.build import ensure_warm_start

    folder = model_folder(recipe)
    columns = (
        TextColumn("warm start"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sft", total=recipe.steps, loss=float("nan"))

        def advance(step: int, loss: float) -> None:
            progress.update(task, completed=step, loss=loss)

        result = ensure_warm_start(recipe, advance, rebuild)
    verb = "built" if result.built else "found in the cache"
    console.print(f"embedded policy {verb}: {folder}")
    if result.built:
        print_report(result.report, console)
    return {"folder": str(result.folder), "built": result.built, **result.report}


TARGETS: dict[str, dict[str, Any]] = {
    "arith_chain": {"greedy": "20% to 70%", "sampled": "", "build": 300},
    "hard_step_chain": {"greedy": "", "sampled": "15% to 50%", "build": 600},
}
"""What a warm start of each recipe task aims for (see the task's benchmark)."""


def print_report(report: dict[str, Any], console: Any) -> None:
    """The warm-start report as a table, each target beside its measured value."""
    from rich.table import Table

    held, loc = report["heldout"], report["localization"]
    targets = TARGETS[report.get("task", "arith_chain")]
    table = Table(title=f"embedded policy, {held['problems']} held-out problems")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    low, high = held["pass_rate_ci95"]
    table.add_row("well-formed chains (T=0)", f"{held['well_formed_rate']:.1%}", ">= 90%")
    table.add_row(
        "pass rate (T=0)", f"{held['pass_rate']:.1%} [{low:.1%}, {high:.1%}]", targets["greedy"]
    )
    _first_error_rows(table, report.get("first_errors", {}), targets["sampled"])
    if loc.get("exact_match_rate") is not None:
        table.add_row(
            f"self-localisation exact match ({loc['chains']} own failed chains)",
            f"{loc['exact_match_rate']:.1%}",
            f"> uniform {loc['uniform_baseline']:.1%}",
        )
    if "build_seconds" in report:
        table.add_row(
            "build time (training + this report)",
            f"{report['build_seconds']:.0f}s",
            f"<= {targets['build']}s",
        )
    console.print(table)


def _first_error_rows(table: Any, errors: dict[str, Any], sampled_target: str) -> None:
    if errors.get("sampled_pass_rate") is not None:
        table.add_row("pass rate (T=1)", f"{errors['sampled_pass_rate']:.1%}", sampled_target)
    if errors.get("at_focus_rate") is not None:
        table.add_row(
            "failed chains (T=1) first wrong at the hard step",
            f"{errors['at_focus_rate']:.1%}",
            "most",
        )
        table.add_row(
            "chains (T=1) clean up to the hard step (p)",
            f"{errors['reach_focus_clean_rate']:.1%}",
            "",
        )
