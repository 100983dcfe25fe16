"""The ``thoughtmdp`` sub-commands, one thin module each, registered through :class:`Command`.

A command module is light to import (no torch, no vLLM): it declares its parser and a ``run``
function that imports what it needs when the command runs. ``thoughtmdp --help`` therefore
loads every command module and nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.arguments import add_settings_arguments

Arguments = Callable[[argparse.ArgumentParser], None]
Runner = Callable[[argparse.Namespace], int]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command without options of its own."""


@dataclass(frozen=True)
class Command:
    """One sub-command: how its command line is parsed and what runs it.

    A :class:`~thoughtmdp.errors.ThoughtMDPError` that escapes ``run`` is the user's to fix
    (a bad setting, a missing file): it is printed as ``thoughtmdp NAME: message`` and the
    exit code is 2, as for a command-line usage error.

    Attributes:
        name: The word after ``thoughtmdp``.
        help: One line for ``thoughtmdp --help``.
        run: Runs the command on the parsed arguments; returns the exit code.
        arguments: Adds the command's own options to its parser.
        description: The longer text of ``thoughtmdp NAME --help``.
        settings: A settings dataclass: adds ``-c FILE`` and ``KEY=VALUE`` overrides, and
            lists every setting with its default and meaning in the help.
        example: Overrides shown in the help of ``settings``.
    """

    name: str
    help: str
    run: Runner
    arguments: Arguments = no_arguments
    description: str | None = None
    settings: type | None = None
    example: str = ""

    def register(self, commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        """Add this command's parser to ``ArgumentParser.add_subparsers()``'s result."""
        parser = commands.add_parser(self.name, help=self.help, description=self.description)
        self.arguments(parser)
        if self.settings is not None:
            add_settings_arguments(parser, self.settings, self.example)
        parser.set_defaults(command_to_run=self)

    def __call__(self, args: argparse.Namespace) -> int:
        """Run the command; a library error becomes a message and exit code 2."""
        try:
            return self.run(args)
        except ThoughtMDPError as exc:
            print(f"thoughtmdp {self.name}: {exc}", file=sys.stderr)
            return 2


def log_to_stderr() -> None:
    """Timestamped INFO logs, for the long-running processes (learner, actor)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
