"""``thoughtmdp tasks``: the registered tasks, one line each."""

from __future__ import annotations

import argparse

from thoughtmdp.commands import Command
from thoughtmdp.mdp.task import describe_tasks


def run(args: argparse.Namespace) -> int:
    """Print each task's name and the first line of its docstring."""
    for line in describe_tasks():
        print(line)
    return 0


COMMAND = Command("tasks", help="list the registered tasks, one line each", run=run)
