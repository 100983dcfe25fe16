"""The command line, run as a user would."""

from __future__ import annotations

import argparse
import subprocess

import pytest

import thoughtmdp as thoughtmdp_package
from thoughtmdp.commands import DEBUG_ENV, Command


def thoughtmdp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["thoughtmdp", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    out = thoughtmdp("--help")
    assert out.returncode == 0
    assert "tasks" in out.stdout and "demo" in out.stdout


def test_tasks_lists_one_line_per_builtin_task():
    out = thoughtmdp("tasks")
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert {"arith_chain", "math", "reasoning_gym"} <= set(names)
    assert "cannot be loaded" not in out.stdout


def test_demo_runs_a_reset_episode():
    out = thoughtmdp("demo", "--seed", "0", "--error-rate", "0.5")
    assert out.returncode == 0, out.stderr
    assert "Reset group" in out.stdout and "h* =" in out.stdout


def test_unknown_command_is_a_usage_error():
    out = thoughtmdp("trian")
    assert out.returncode == 2
    assert "invalid choice: 'trian'" in out.stderr


def test_version():
    out = thoughtmdp("--version")
    assert out.returncode == 0 and out.stdout == f"thoughtmdp {thoughtmdp_package.__version__}\n"


def failing(args: argparse.Namespace) -> int:
    raise KeyError("no such entry")


def test_an_unexpected_error_is_one_line_unless_debugging(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    command = Command("boom", help="fails", run=failing)
    assert command(argparse.Namespace(debug=False)) == 1
    assert capsys.readouterr().err == (
        "thoughtmdp boom: KeyError: 'no such entry' (thoughtmdp --debug shows the traceback)\n"
    )
    with pytest.raises(KeyError):
        command(argparse.Namespace(debug=True))
    monkeypatch.setenv(DEBUG_ENV, "1")  # how the processes a command starts inherit --debug
    with pytest.raises(KeyError):
        command(argparse.Namespace(debug=False))
