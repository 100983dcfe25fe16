"""The README's examples work as written: its Python runs, its command lines parse."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from thoughtmdp.cli import build_parser
from thoughtmdp.commands.config import load_config
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.files import shipped_configs
from thoughtmdp.settings.loader import load

README = Path(__file__).resolve().parents[1] / "README.md"
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=\S")


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def command_lines() -> list[str]:
    """Every ``thoughtmdp ...`` command of the README's shell blocks, continuations joined."""
    lines = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.DOTALL):
        if language == "python":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line.split("  #")[0]):
                if part.strip().startswith("thoughtmdp "):
                    lines.append(part.strip())
    return lines


def override_spans() -> list[str]:
    """Inline code made only of ``key=value`` settings, e.g. ``actor.task=x model=PATH``."""
    spans = re.findall(r"`([^`\n]+)`", README.read_text())
    return [s for s in spans if all(OVERRIDE.match(t) for t in s.split()) and " " in s]


def parse_settings(argv: list[str]) -> object:
    """The settings a command line asks for, checked as ``config show`` checks them."""
    args = build_parser().parse_args(argv)
    if args.command == "config" and args.action == "show":
        return load_config(args.kind or "train", args.config, args.overrides)
    settings = args.command_to_run.settings
    if args.command == "train":
        return load_config("train", args.config, args.overrides)
    return load(settings, args.config, args.overrides) if settings is not None else args


def test_the_readme_has_commands_to_check():
    lines = command_lines()
    assert len(lines) >= 10 and any(line.startswith("thoughtmdp eval") for line in lines)
    assert "actor.task=sum_digits actor.task_options={size:500} model=PATH" in override_spans()


@pytest.mark.parametrize("line", command_lines())
def test_every_readme_command_parses(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)[1:]
    for flag, value in itertools.pairwise(argv):
        if flag == "-c" and value not in shipped_configs():
            (tmp_path / value).write_text("learner: {checkpoint_every: 5}\n")  # the user's file
    assert parse_settings(argv) is not None


@pytest.mark.parametrize("span", override_spans())
def test_every_readme_override_example_parses(span):
    """Settings of ``thoughtmdp train``, or of the ``learner`` or ``actor`` the text is about."""
    test_readme_python_example_runs()  # registers the README's own task, sum_digits
    errors = []
    for kind in ("train", "learner", "actor"):
        try:
            config = load_config(kind, None, span.split())
        except ConfigError as exc:
            errors.append(f"{kind}: {exc}")
            continue
        if "task_options=" in span:
            assert config.actor.task_options == {"size": 500}
        return
    pytest.fail("; ".join(errors))
