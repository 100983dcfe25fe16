"""Typed configuration: nesting, YAML files, overrides and the errors they raise."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal

import pytest

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.convert import from_dict, to_dict
from thoughtmdp.settings.loader import apply_overrides, load, parse_override


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine"] = "constant"


@dataclasses.dataclass(frozen=True)
class Run:
    steps: int = 10
    name: str | None = None
    out: Path = Path("runs")
    optim: Optim = dataclasses.field(default_factory=Optim)
    tags: tuple[str, ...] = ()


def test_nested_values_are_converted():
    run = from_dict(
        Run, {"steps": 3, "optim": {"lr": 1, "betas": [0.8, 0.9]}, "out": "x", "tags": ["a"]}
    )
    assert run == Run(3, None, Path("x"), Optim(1.0, (0.8, 0.9)), ("a",))
    assert isinstance(run.optim.lr, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stpes": 3}, "unknown key 'stpes'. Did you mean 'steps'?"),
        ({"optim": {"betaz": [1, 2]}}, "unknown key 'optim.betaz'. Did you mean 'optim.betas'?"),
        ({"zzz": 1}, "unknown key 'zzz'. Valid keys: ['steps', 'name', 'out', 'optim', 'tags']"),
        ({"steps": "3"}, "steps: expected int, got '3'"),
        ({"steps": True}, "steps: expected int, got True"),
        ({"steps": 2.5}, "steps: expected int, got 2.5"),
        ({"optim": {"betas": [0.9]}}, "optim.betas: expected 2 items, got 1"),
        (
            {"optim": {"schedule": "linear"}},
            "optim.schedule: expected one of ['constant', 'cosine'], got 'linear'",
        ),
        ({"optim": 3}, "optim must be a mapping, got int"),
        ({"name": 5}, "name: expected str | None, got 5"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        from_dict(Run, data)


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 4\noptim:\n  lr: 1.0e-4\n")
    run = load(Run, path, ["optim.schedule=cosine", "name=demo", "tags=[x, y]"])
    assert run == Run(4, "demo", Path("runs"), Optim(1e-4, (0.9, 0.999), "cosine"), ("x", "y"))
    assert to_dict(run)["optim"] == {"lr": 1e-4, "betas": [0.9, 0.999], "schedule": "cosine"}
    assert from_dict(Run, to_dict(run)) == run


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [1\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: not valid YAML"):
        load(Run, path)
    path.write_text("optim:\n  lr: fast\n")
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(path))}: optim.lr: expected float, got 'fast'$"
    ):
        load(Run, path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps", "override 'steps' must look like key=value"),
        ("steps.x=1", "override 'steps.x=1': 'steps' is not a section"),
        ("optim.lrr=1", "unknown key 'optim.lrr'. Did you mean 'optim.lr'?"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        apply_overrides(Run(), [override])


@dataclasses.dataclass(frozen=True)
class Tuned:
    optim: Optim = dataclasses.field(default_factory=lambda: Optim(lr=2e-4, schedule="cosine"))
    options: dict[str, int] = dataclasses.field(default_factory=dict)


def test_a_file_keeps_the_defaults_of_a_section_it_only_touches(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  betas: [0.8, 0.9]\n")
    assert load(Tuned, path).optim == Optim(2e-4, (0.8, 0.9), "cosine")


@pytest.mark.parametrize(
    ("override", "options"),
    [
        ("options={size:500}", {"size": 500}),
        ("options={size: 500}", {"size": 500}),
        ("options={a:1,b:2}", {"a": 1, "b": 2}),
        ("options={}", {}),
    ],
)
def test_a_flow_mapping_without_spaces_is_a_mapping(override, options):
    assert apply_overrides(Tuned(), [override]).options == options


def test_flow_values_keep_colons_inside_them():
    assert parse_override("{url:http://x:8080/a, t:'a: b', n:{m:[1, 2]}}") == {
        "url": "http://x:8080/a",
        "t": "a: b",
        "n": {"m": [1, 2]},
    }
    assert parse_override("a:b") == "a:b"  # not a mapping: a string, as YAML reads it


def test_an_override_that_is_not_yaml_names_its_key():
    message = "options: value '{size:[500}' is not valid YAML (while parsing a flow sequence)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        apply_overrides(Tuned(), ["options={size:[500}"])
