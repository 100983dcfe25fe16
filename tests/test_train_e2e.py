"""`thoughtmdp train` end to end: real processes and sockets, two actors, a tiny warm start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def env(root):
    """One embedded-policy cache for the module's runs (the warm start is built once)."""
    return {**os.environ, "THOUGHTMDP_CACHE": str(root / "cache"), "COLUMNS": "120"}


def train(*args, env, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "thoughtmdp.cli", "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def short_run(root, env):
    run_dir = root / "run"
    result = train(f"run_dir={run_dir}", *SHORT_RUN, env=env)
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


# -- stopping and resuming ---------------------------------------------------------------------

LONGER = {"learner.max_steps": "8", "learner.checkpoint_every": "4", "plots": "false"}
STOPPED_RUN = [
    *(a for a in SHORT_RUN if a.split("=")[0] not in LONGER),
    *(f"{key}={value}" for key, value in LONGER.items()),
]


def children_of(pid: int) -> set[int]:
    """Process ids of ``pid``'s descendants (from /proc)."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with open(task / "children") as f:
                kids = {int(k) for k in f.read().split()}
            frontier.extend(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for_steps(run_dir: Path, steps: int, process: subprocess.Popen, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no step {steps} within {timeout}s")


@pytest.fixture(scope="module")
def stopped_and_resumed(root, env, short_run):  # short_run: the warm start exists
    run_dir = root / "stopped"
    process = subprocess.Popen(
        [sys.executable, "-m", "thoughtmdp.cli", "train", f"run_dir={run_dir}", *STOPPED_RUN],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_steps(run_dir, 2, process)
    family = children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    stop = {"code": process.returncode, "out": out, "err": err, "family": family}
    stop["left"] = {pid for pid in family if alive(pid)}
    stop["checkpoint"] = json.loads(
        max((run_dir / "checkpoints").glob("step-*/state.json")).read_text()
    )
    stop["steps"] = len(read_jsonl(run_dir / "metrics.jsonl"))
    resumed = train("--resume", str(run_dir), env=env)
    return run_dir, stop, resumed


@pytest.mark.slow
def test_sigterm_stops_the_whole_run_cleanly_and_names_the_resume_command(stopped_and_resumed):
    run_dir, stop, _ = stopped_and_resumed
    assert stop["code"] == 128 + signal.SIGTERM, stop["err"][-3000:]
    assert len(stop["family"]) >= 3  # the learner and two actors
    assert stop["left"] == set()
    assert "Traceback" not in stop["err"] + stop["out"]
    assert f"continue the run with: thoughtmdp train --resume {run_dir}\n" in stop["out"]
    assert stop["checkpoint"]["step"] == stop["steps"]  # checkpointed on the way out
    assert json.loads((run_dir / "summary.json").read_text())["training"]["steps"] >= 2


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint_with_the_resumed_adapter(stopped_and_resumed):
    run_dir, stop, resumed = stopped_and_resumed
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "held-out pass rate, version 0" not in resumed.stdout  # recorded before the stop
    steps = read_jsonl(run_dir / "metrics.jsonl")
    after = [s["step"] for s in steps[stop["steps"] :]]
    assert after == list(range(stop["checkpoint"]["step"] + 1, 9))
    resumed_at, step = stop["checkpoint"]["version"], stop["checkpoint"]["step"]
    episodes = [e for e in read_jsonl(run_dir / "episodes.jsonl") if e["step"] > step]
    assert episodes and min(min(e["versions"]) for e in episodes) >= resumed_at


@pytest.mark.slow
def test_a_run_that_trains_no_step_fails_with_the_reason(root, env, short_run):
    result = train(f"run_dir={root / 'no-steps'}", *STOPPED_RUN, "max_minutes=0.001", env=env)
    assert result.returncode == 1
    assert "the time budget (max_minutes=0.001) ran out before the first step" in " ".join(
        result.stdout.split()
    )


@pytest.mark.slow
def test_a_second_run_into_the_same_folder_is_refused_at_once(short_run, env):
    run_dir, _ = short_run
    result = train(f"run_dir={run_dir}", env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        f"thoughtmdp train: {run_dir} already holds a run; continue it with "
        f"`thoughtmdp train --resume {run_dir}` or choose another run_dir\n"
    )


@pytest.mark.slow
def test_train_runs_a_two_rank_deepspeed_learner(root, env):
    pytest.importorskip("deepspeed", reason='install with: pip install "thoughtmdp[deepspeed]"')
    run_dir = root / "deepspeed"
    ranks = ["learner.num_processes=2", "learner.deepspeed.zero_stage=2"]
    short = ["actors=1", "learner.max_steps=2", "heldout.problems=4", "plots=false"]
    result = train(
        f"run_dir={run_dir}", *SHORT_RUN, *short, *ranks, env={**env, "DS_ACCELERATOR": "cpu"}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [s["step"] for s in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    assert sorted(p.name for p in checkpoint.glob("rng-rank*.json")) == [
        "rng-rank0.json",
        "rng-rank1.json",
    ]
    assert "deepspeed.launcher" in (run_dir / "logs" / "learner.log").read_text()
