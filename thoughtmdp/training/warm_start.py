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


def print_report(report: dict[str, Any], console: Any) -> None:
    """The warm-start report as a table, each target beside its measured value."""
    from rich.table import Table

    held, loc = report["heldout"], report["localization"]
    table = Table(title=f"embedded policy, {held['problems']} held-out problems")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    low, high = held["pass_rate_ci95"]
    table.add_row("well-formed chains (T=0)", f"{held['well_formed_rate']:.1%}", ">= 90%")
    table.add_row(
        "pass rate (T=0)", f"{held['pass_rate']:.1%} [{low:.1%}, {high:.1%}]", "20% to 70%"
    )
    if loc.get("exact_match_rate") is not None:
        table.add_row(
            f"self-localisation exact match ({loc['chains']} own failed chains)",
            f"{loc['exact_match_rate']:.1%}",
            f"> uniform {loc['uniform_baseline']:.1%}",
        )
    if "build_seconds" in report:
        table.add_row(
            "build time (training + this report)", f"{report['build_seconds']:.0f}s", "<= 300s"
        )
    console.print(table)
