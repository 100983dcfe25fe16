"""`thoughtmdp train` gives the learner and each actor their own cores and GPUs."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.placement import PlacementSettings, format_list
from thoughtmdp.training import launch
from thoughtmdp.training.placement import Slot, plan

CORES = sorted(os.sched_getaffinity(0))
SLEEPER = ["-n", "1", "-r", "1", "__import__('time').sleep(60)"]  # python -m timeit ...


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


def test_by_default_the_learner_takes_its_share_of_the_cores_and_the_actors_the_rest(
    monkeypatch,
):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("thoughtmdp.training.placement.NVIDIA_GPUS", Path("/nonexistent"))
    placement = plan(PlacementSettings(), ranks=1, actors=1)
    if len(CORES) == 1:
        assert placement.learner.cpus == placement.actors[0].cpus == CORES
        return
    half = len(CORES) // 2
    assert placement.learner == Slot("learner", CORES[:half], None, 1)
    assert placement.actors == [Slot("actor-0", CORES[half:], None, 1)]
    off = plan(PlacementSettings(enabled=False), ranks=1, actors=1)
    assert off.learner.cpus is None and off.actors[0].cpus is None


def test_learner_ranks_take_the_first_gpus_and_the_actors_split_the_rest(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7,8")
    placement = plan(PlacementSettings(), ranks=2, actors=3)
    assert placement.learner.gpus == ["4", "5"]
    assert [slot.gpus for slot in placement.actors] == [["6"], ["7"], ["8"]]
    given = plan(PlacementSettings(learner_gpus="3", actor_gpus="0-1"), ranks=1, actors=2)
    assert given.learner.gpus == ["7"] and [s.gpus for s in given.actors] == [["4"], ["5"]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as many GPUs as ranks: shared
    assert plan(PlacementSettings(), ranks=1, actors=1).actors[0].gpus is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            PlacementSettings(learner_cpus=4096),
            "placement.learner_cpus: cores 4096 not available to this process "
            f"(available: {format_list(CORES)})",
        ),
        (
            PlacementSettings(learner_cpus=CORES[0], actor_cpus=f"{CORES[0]}"),
            f"placement.actor_cpus: {CORES[0]} also given to the learner "
            "(placement.learner_cpus); give each process its own",
        ),
        (
            PlacementSettings(learner_cpus=format_list(CORES)),
            "placement.learner_cpus: it leaves the actors nothing; set placement.actor_cpus",
        ),
        (
            PlacementSettings(actor_gpus="2"),
            "placement.actor_gpus: GPUs 2 not available to this process (available: 0-1)",
        ),
    ],
)
def test_missing_or_doubly_given_devices_are_refused(monkeypatch, settings, message):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        plan(settings, ranks=1, actors=1)


def test_train_refuses_a_missing_core_before_anything_starts(tmp_path, capsys):
    from thoughtmdp.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", f"run_dir={run_dir}", "placement.actor_cpus=4096"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thoughtmdp train: placement.actor_cpus: cores 4096 not available")
    assert not run_dir.exists()
    assert main(["train", "placement.learner_cpus=1-0"]) == 2
    assert capsys.readouterr().err == (
        "thoughtmdp train: placement.learner_cpus: range 1-0 runs backwards in '1-0'\n"
    )


def test_started_processes_run_on_their_cores_with_their_gpus_and_threads(tmp_path, monkeypatch):
    monkeypatch.delenv(launch.CPU_BIND_ENV, raising=False)
    core = CORES[-1]
    slot = Slot("actor-0", cpus=[core], gpus=["3"])
    child = launch.start(slot, SLEEPER, tmp_path / "actor.log", slot.threads or 0, "timeit")
    inherited = launch.start(Slot("learner"), SLEEPER, tmp_path / "learner.log", 2, "timeit")
    try:
        time.sleep(0.2)
        assert os.sched_getaffinity(child.process.pid) == {core}
        env = environ(child.process.pid)
        assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["OMP_NUM_THREADS"] == "1"
        assert env[launch.CPU_BIND_ENV] == str(core)  # vLLM's threads on the actor's cores
        assert os.sched_getaffinity(inherited.process.pid) == set(CORES)
        env = environ(inherited.process.pid)
        assert env[launch.CPU_BIND_ENV] == "nobind"
        assert env.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    finally:
        for started in (child, inherited):
            started.end(signal.SIGTERM, grace_s=5)


def test_a_user_set_vllm_binding_is_kept(monkeypatch):
    monkeypatch.setenv(launch.CPU_BIND_ENV, "0-3")
    env = launch.child_environment(1, Slot("actor-0", cpus=[1]))
    assert env[launch.CPU_BIND_ENV] == "0-3"
