"""The ``thoughtmdp`` command line: parses arguments, then imports what the command needs."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from thoughtmdp import __version__
from thoughtmdp.commands import DEBUG_ENV, Command

COMMANDS = (
    "tasks", "demo", "eval_code", "eval", "audit", "learner", "actor",
    "train", "config", "warmstart", "plot", "export",
)  # fmt: skip
"""Modules of :mod:`thoughtmdp.commands`, each holding one ``COMMAND``, in ``--help`` order."""


def commands() -> list[Command]:
    """Every sub-command (importing a command module loads nothing heavy)."""
    modules = (importlib.import_module(f"thoughtmdp.commands.{name}") for name in COMMANDS)
    return [module.COMMAND for module in modules]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``thoughtmdp`` sub-command."""
    parser = argparse.ArgumentParser(
        prog="thoughtmdp",
        description="RL post-training of language models with resets to earlier reasoning steps.",
    )
    parser.add_argument("--version", action="version", version=f"thoughtmdp {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=(
            "show the full traceback of an error (by default: one line naming the cause); "
            f"the processes a command starts inherit it as ${DEBUG_ENV}=1"
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"
    command: Command = args.command_to_run
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
