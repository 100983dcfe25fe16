"""The ``thoughtmdp plot`` command: draw run folders' plots (matplotlib loads only then)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thoughtmdp.commands import Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """The run folders and where the PNGs go."""
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders")
    parser.add_argument(
        "--out", type=Path, help="folder for the PNGs (default: RUN_DIR/plots, or ./plots)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp plot``; returns the exit code (2 when a folder is not a run)."""
    from thoughtmdp.runs.plots import plot_runs

    out = args.out or (args.runs[0] / "plots" if len(args.runs) == 1 else Path("plots"))
    try:
        paths = plot_runs(args.runs, out)
    except FileNotFoundError as exc:
        print(f"thoughtmdp plot: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


COMMAND = Command(
    "plot",
    help="draw PNG plots of one or more run folders (overlaid)",
    run=run,
    arguments=arguments,
    description=(
        "Held-out and training reward against samples and wall-clock, reset positions, "
        "correction rates from clean and erroneous prefixes, the reset group's pass rate, "
        "the gradient-signal ratio and a per-thought gradient-signal map."
    ),
)
