"""The ``thoughtmdp`` command line: parses arguments, then imports what the command needs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from thoughtmdp.commands import Command

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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    command: Command = args.command_to_run
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
