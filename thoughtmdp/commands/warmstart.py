"""The ``thoughtmdp warmstart`` command: build (or find) the embedded policy and report on it.

Nothing here imports torch at module level: the recipe is checked before the build starts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.arguments import add_settings_arguments
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.warmstart import WarmStartRecipe, model_folder


def add_parser(commands: Any) -> None:
    """Add the ``warmstart`` sub-command to an argparse sub-parsers object."""
    parser = commands.add_parser(
        "warmstart",
        help="build the embedded tiny policy (cached by recipe) and report its held-out numbers",
        description=(
            "Trains a tiny Qwen2 model from scratch on ArithChain traces with injected "
            "mistakes and on localisation questions, then measures it on held-out problems. "
            "The model is cached under $THOUGHTMDP_CACHE (default ~/.cache/thoughtmdp) in a "
            "folder named by the recipe's fingerprint; `thoughtmdp train` uses it."
        ),
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if it is cached")
    add_settings_arguments(parser, WarmStartRecipe, "steps=600 num_steps=4")


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp warmstart``; returns the exit code (2 for a bad recipe)."""
    try:
        recipe = load(WarmStartRecipe, args.config, args.overrides)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp warmstart: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console

    console = Console()
    report = warm_start_with_progress(recipe, console, rebuild=args.rebuild)
    print_report(report, console)
    return 0


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
