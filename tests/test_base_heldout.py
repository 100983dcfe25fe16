"""The embedded policy's version-0 held-out record: stored beside it, reused by later runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from thoughtmdp.evaluation.heldout import HeldoutResult, SampledResult
from thoughtmdp.runs.files import read_heldout
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import TrainConfig, resolve
from thoughtmdp.settings.warmstart import model_folder
from thoughtmdp.training.base_heldout import base_record_path
from thoughtmdp.training.run import HeldoutEvaluator


class Console:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def print(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("THOUGHTMDP_CACHE", str(tmp_path / "cache"))


def resolved(run_dir: Path, *overrides: str) -> TrainConfig:
    run_dir.mkdir(parents=True, exist_ok=True)
    return resolve(load(TrainConfig, None, ["heldout.samples=2", *overrides]), run_dir)


def test_the_record_is_kept_in_the_model_folder_under_what_decides_it(cache, tmp_path):
    grpo = resolved(tmp_path / "a", "actor.episode.presets=[grpo]", "learner.optim.lr=1e-3")
    srpo = resolved(tmp_path / "b", "heldout.versions=9", "actor.seed=7")
    path = base_record_path(grpo)
    assert path is not None and path.parent == model_folder(grpo.warmstart) / "heldout"
    assert base_record_path(srpo) == path  # method, rate, seed and versions do not decide it
    assert base_record_path(resolved(tmp_path / "c", "heldout.samples=4")) != path
    assert base_record_path(resolved(tmp_path / "d", "actor.sampling.temperature=1.0")) != path
    assert base_record_path(resolved(tmp_path / "e", "model=/some/model")) is None
    assert base_record_path(TrainConfig(run_dir=tmp_path)) is None  # not resolved


def test_a_later_run_reuses_version_0_without_evaluating(cache, tmp_path):
    first = HeldoutEvaluator(resolved(tmp_path / "first"), Console())
    sampled = SampledResult(((1.0, 0.0), (0.0, 0.0)), 1.0)
    first._record(0, HeldoutResult(("test/0", "test/1"), (1.0, 0.0), (True, True), 2.0, sampled))
    console = Console()
    second = HeldoutEvaluator(resolved(tmp_path / "second"), console)
    second([0])  # no model exists: evaluating would fail
    assert second.results[0] == first.results[0]
    assert read_heldout(tmp_path / "second")[0]["sampled"]["passed"] == [[1, 0], [0, 0]]
    assert console.lines == ["held-out record of version 0 (the embedded policy) reused"]
