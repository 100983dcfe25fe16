"""The ``thoughtmdp warmstart`` command: build (or find) the embedded policy and report on it.

Nothing here imports torch at module level: the recipe is checked before the build starts.
"""

from __future__ import annotations

import argparse

from thoughtmdp.commands import Command
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.warmstart import WarmStartRecipe


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--rebuild``; the recipe comes with ``-c`` and ``KEY=VALUE``."""
    parser.add_argument("--rebuild", action="store_true", help="build even if it is cached")


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp warmstart``; returns the exit code."""
    recipe = load(WarmStartRecipe, args.config, args.overrides)
    from rich.console import Console

    from thoughtmdp.training.warm_start import print_report, warm_start_with_progress

    console = Console()
    report = warm_start_with_progress(recipe, console, rebuild=args.rebuild)
    if not report["built"]:  # a fresh build has printed its report already
        print_report(report, console)
    return 0


COMMAND = Command(
    "warmstart",
    help="build the embedded tiny policy (cached by recipe) and report its held-out numbers",
    run=run,
    arguments=arguments,
    description=(
        "Trains a tiny Qwen2 model from scratch on ArithChain traces with injected "
        "mistakes and on localisation questions, then measures it on held-out problems. "
        "The model is cached under $THOUGHTMDP_CACHE (default ~/.cache/thoughtmdp) in a "
        "folder named by the recipe's fingerprint; `thoughtmdp train` uses it."
    ),
    settings=WarmStartRecipe,
    example="steps=600 num_steps=4",
)
