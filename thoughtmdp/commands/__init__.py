"""The ``thoughtmdp`` sub-commands, one thin module each, registered through :class:`Command`.

A command module is light to import (no torch, no vLLM): it declares its parser and a ``run``
function that imports what it needs when the command runs. ``thoughtmdp --help`` therefore
loads every command module and nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.arguments import add_settings_arguments

DEBUG_ENV = "THOUGHTMDP_DEBUG"
"""Set (to anything but empty) by ``thoughtmdp --debug``: errors show their traceback."""

Arguments = Callable[[argparse.ArgumentParser], None]
Runner = Callable[[argparse.Namespace], int]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command without options of its own."""


@dataclass(frozen=True)
class Command:
    """One sub-command: how its command line is parsed and what runs it.

    A :class:`~thoughtmdp.errors.ThoughtMDPError` that escapes ``run`` is the user's to fix
    (a bad setting, a missing file): it is printed as ``thoughtmdp NAME: message`` and the
    exit code is 2, as for a command-line usage error. Any other exception is printed as one
    line too, ``thoughtmdp NAME: Type: message``, with exit code 1; ``thoughtmdp --debug``
    (or ``THOUGHTMDP_DEBUG=1``, which the processes a command starts inherit) shows the
    traceback of either instead.

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
        """Run the command; an error becomes one line and exit code 2 (the user's) or 1."""
        if getattr(args, "debug", False) or os.environ.get(DEBUG_ENV):
            return self.run(args)
        try:
            return self.run(args)
        except ThoughtMDPError as exc:
            print(f"thoughtmdp {self.name}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"thoughtmdp {self.name}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            print(
                f"thoughtmdp {self.name}: {type(exc).__name__}: {exc} "
                "(thoughtmdp --debug shows the traceback)",
                file=sys.stderr,
            )
            return 1


def log_to_stderr() -> None:
    """Timestamped INFO logs, for the long-running processes (learner, actor)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
