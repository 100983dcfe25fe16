"""`thoughtmdp train` end to end: real processes and sockets, two actors, a tiny warm start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thoughtmdp.runs.files import read_heldout, read_jsonl

SHORT_RUN = [
    "warmstart.steps=30",
    "warmstart.eval_problems=16",
    "actors=2",
    "actor.backend=transformers",
    "actor.in_flight=4",
    "learner.prompts_per_step=4",
    "learner.prompts_per_minibatch=4",
    "learner.max_steps=4",
    "learner.checkpoint_every=2",
    "learner.signal_map_every=1",
    "heldout.problems=16",
    "heldout.versions=0",
    "max_minutes=null",
]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    env = {**os.environ, "THOUGHTMDP_CACHE": str(root / "cache"), "COLUMNS": "120"}
    run_dir = root / "run"
    result = subprocess.run(
        [sys.executable, "-m", "thoughtmdp.cli", "train", f"run_dir={run_dir}", *SHORT_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, result.stdout


@pytest.mark.slow
def test_the_output_names_the_backend_and_the_run_directory(short_run):
    run_dir, output = short_run
    head = "\n".join(output.splitlines()[:5])
    assert "with the transformers backend" in head
    assert str(run_dir) in head
    assert "held-out pass rate" in output


@pytest.mark.slow
def test_the_learner_trained_on_both_actors_episodes(short_run):
    run_dir, _ = short_run
    steps = read_jsonl(run_dir / "metrics.jsonl")
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert [s["learner/version"] for s in steps] == [1, 2, 3, 4]
    taken = {
        a: sum(s.get(f"learner/episodes/{a}", 0) for s in steps) for a in ("actor-0", "actor-1")
    }
    assert min(taken.values()) > 0 and sum(taken.values()) == 16, taken
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    assert [e["step"] for e in episodes] == [k for k in (1, 2, 3, 4) for _ in range(4)]


@pytest.mark.slow
def test_the_run_directory_holds_config_adapters_evaluation_and_plots(short_run):
    run_dir, _ = short_run
    for name in ("config.yaml", "metrics.jsonl", "heldout.json", "summary.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert sorted(p.name for p in (run_dir / "adapters").iterdir())[-1] == "v000004"
    assert any((run_dir / "checkpoints").iterdir())
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    heldout = read_heldout(run_dir)
    assert sorted(heldout) == [0, 4]
    assert all(len(result["rewards"]) == 16 for result in heldout.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["heldout"]["problems"] == 16
    plots = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert {"heldout.png", "training_reward.png", "reset_positions.png"} <= set(plots)
    assert all((run_dir / "plots" / p).stat().st_size > 1000 for p in plots)


@pytest.mark.slow
def test_the_resolved_config_reruns_as_written(short_run, capsys, monkeypatch):
    from thoughtmdp.cli import main

    run_dir, _ = short_run
    monkeypatch.setenv("THOUGHTMDP_CACHE", str(run_dir.parent / "cache"))  # same model folder
    assert main(["config", "show", "-c", str(run_dir / "config.yaml")]) == 0
    shown = capsys.readouterr().out
    assert f"run_dir: {run_dir}" in shown and "actors: 2" in shown
