"""The learning and throughput benchmarks in --quick mode, on a tiny warm start, end to end.

Real ``thoughtmdp train`` runs (processes, sockets, the transformers backend); the tests check
that every figure the results table needs is measured and written, not the figures themselves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SMALL = [
    "warmstart.steps=30",
    "warmstart.eval_problems=16",
    "actor.backend=transformers",
    "actor.in_flight=4",
    "learner.prompts_per_step=4",
    "learner.prompts_per_minibatch=4",
    "learner.checkpoint_every=0",
]


def load(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # as when the script runs: its helpers import
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("THOUGHTMDP_CACHE")
    os.environ["THOUGHTMDP_CACHE"] = str(path)
    yield path
    if old is None:
        del os.environ["THOUGHTMDP_CACHE"]
    else:
        os.environ["THOUGHTMDP_CACHE"] = old


def settings() -> list[str]:
    return [arg for s in SMALL for arg in ("--set", s)]


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    train_runs = load("train_runs")
    run_dir = tmp_path / "grpo-seed0"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    (run_dir / train_runs.ARGS_FILE).write_text(json.dumps(["learner.max_steps=60"]))
    assert train_runs.train_once(run_dir, ["learner.max_steps=60"]) == run_dir
    with pytest.raises(RuntimeError, match="holds a run with other settings"):
        train_runs.train_once(run_dir, ["learner.max_steps=3"])
    # a setting that restates the library's behaviour when the run was made still matches
    pinned = ["learner.max_steps=60", "actor.pin_version=false"]
    assert train_runs.train_once(run_dir, pinned, implicit=pinned[1:]) == run_dir
    with pytest.raises(RuntimeError, match="holds a run with other settings"):
        train_runs.train_once(run_dir, pinned)


def test_a_failed_run_names_its_log(tmp_path):
    train_runs = load("train_runs")
    with pytest.raises(RuntimeError, match=r"see .*bad\.log"):
        train_runs.train_once(tmp_path / "bad", ["learner.no_such_key=1"])


@pytest.mark.slow
def test_learning_quick_writes_curves_goals_and_the_probe(cache, tmp_path):
    learning = load("learning")
    out, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--quick", "--focus", "--methods", "grpo", "oracle", *settings()]
    learning.main([*argv, "--out", str(out), "--runs", str(runs)])
    report = json.loads((out / "learning.json").read_text())
    assert set(report["main"]) == {"grpo", "oracle"}
    for key in ("h8/grpo-lr0.0002-seed0", "h8/oracle-lr0.0002-seed0"):
        curve = report["runs"][key]["curve"]
        assert [p["version"] for p in curve] == [0, 2]
        assert curve[0]["rollouts"] == curve[0]["tokens"] == 0
        assert curve[-1]["tokens"] > 0
        assert 0 <= curve[-1]["sampled"] <= 1 and curve[-1]["sampled_se"] >= 0
    # generated rollouts: 2 steps x 4 prompts x 8 trained, and a seed chain per oracle episode
    assert report["runs"]["h8/grpo-lr0.0002-seed0"]["curve"][-1]["rollouts"] == 2 * 4 * 8
    assert report["runs"]["h8/oracle-lr0.0002-seed0"]["curve"][-1]["rollouts"] >= 2 * 4 * 9
    # version 0 is evaluated once and shared: both runs start from the same draws
    assert (
        report["runs"]["h8/grpo-lr0.0002-seed0"]["curve"][0]
        == (report["runs"]["h8/oracle-lr0.0002-seed0"]["curve"][0])
    )
    assert report["main"]["oracle"]["resets"]["exact_match_rate"] is not None
    # the hard step from a correct prefix: one starting policy, each run's last adapter
    focus = {m: report["main"][m]["focus"] for m in ("grpo", "oracle")}
    assert focus["grpo"]["start"] == focus["oracle"]["start"]
    assert all(0 <= f["final"] <= 1 and f["seeds"] == 1 for f in focus.values())
    assert focus["oracle"]["gap_to_grpo"]["gap"] == pytest.approx(
        focus["oracle"]["final"] - focus["grpo"]["final"]
    )
    measured = json.loads((runs / "h8" / "grpo-lr0.0002-seed0" / "focus.json").read_text())
    assert [v["version"] for v in measured.values()] == [2]
    assert "## The hard step from a correct prefix" in (out / "learning.md").read_text()
    assert 0 <= report["probes"]["8"]["reach_focus_clean_rate"] <= 1
    assert any(g["goal"].startswith("oracle reaches") for g in report["goals"])
    assert "| oracle |" in (out / "learning.md").read_text()
    assert (out / "learning.png").stat().st_size > 10_000


@pytest.mark.slow
def test_throughput_quick_measures_ratios_and_the_synchronous_baseline(cache, tmp_path):
    throughput = load("throughput")
    out, runs = tmp_path / "results", tmp_path / "runs"
    throughput.main(["--quick", *settings(), "--out", str(out), "--runs", str(runs)])
    report = json.loads((out / "throughput.json").read_text())
    assert set(report["runs"]) == {"grpo", "srpo", "srpo-sync"}
    assert report["runs"]["grpo"]["localizations_per_step"] == 0
    assert report["runs"]["srpo"]["localizations_per_step"] > 0
    assert report["runs"]["srpo"]["localizer_tokens_per_step"] > 0
    for ratio in ("step_ratio", "token_ratio", "async_speedup"):
        assert report["comparison"][ratio] > 0
    # The synchronous actor never runs ahead: every episode of step k was sampled with the
    # adapter of step k - 1.
    episodes = [json.loads(line) for line in (runs / "srpo-sync" / "episodes.jsonl").open()]
    assert all(set(e["versions"]) <= {e["step"] - 1} for e in episodes)
    assert "| srpo-sync |" in (out / "throughput.md").read_text()
    assert (out / "throughput.png").stat().st_size > 10_000
