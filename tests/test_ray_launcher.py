"""`thoughtmdp train launcher=ray` on a local two-node Ray cluster, one actor killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thoughtmdp.runs.files import read_jsonl

ray = pytest.importorskip("ray", reason='install with: pip install "thoughtmdp[ray]"')

RUN = [
    "launcher=ray",
    "actors=2",
    "actor.backend=transformers",
    "actor.in_flight=4",
    "learner.prompts_per_step=4",
    "learner.prompts_per_minibatch=4",
    "learner.max_steps=6",
    "learner.checkpoint_every=3",
    "heldout.problems=0",
    "plots=false",
    "max_minutes=null",
]


def pid_of(config: Path, role: str, timeout: float = 120.0) -> int:
    """The ``thoughtmdp learner`` or ``thoughtmdp actor`` process started with ``config``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, PermissionError, NotADirectoryError):
                continue
            if str(config).encode() in command and role.encode() in command:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no process runs {config}")


def wait_for_steps(metrics: Path, steps: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and len(read_jsonl(metrics)) >= steps):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"fewer than {steps} steps in {timeout} s"
        time.sleep(0.2)


def train(*args: str, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "thoughtmdp.cli", "train", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def actor_starts(run_dir: Path) -> int:
    return (run_dir / "logs" / "actor-0.log").read_text().count("thoughtmdp: actor-0 starts")


@pytest.mark.slow
def test_ray_restarts_a_killed_actor_and_a_killed_learner_ends_the_run_for_resume(
    tmp_path, tiny_model_dir
):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2)  # the learner fits the head only; the actors go here
    run_dir = tmp_path / "run"
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "COLUMNS": "120"}
    metrics, configs = run_dir / "metrics.jsonl", run_dir / "configs"
    first = train(f"run_dir={run_dir}", *RUN, f"model={tiny_model_dir}", env=env)
    resumed = first
    try:
        wait_for_steps(metrics, 1, first, timeout=300)
        os.kill(pid_of(configs / "actor-0.yaml", "actor"), signal.SIGKILL)
        wait_for_steps(metrics, 3, first, timeout=300)
        deadline = time.monotonic() + 60
        while actor_starts(run_dir) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert actor_starts(run_dir) == 2, "Ray did not restart the killed actor"
        os.kill(pid_of(configs / "learner.yaml", "learner"), signal.SIGKILL)
        output, _ = first.communicate(timeout=300)
        assert first.returncode == 1, output[-3000:]
        assert "learner exited with status -9" in output
        killed_at = len(read_jsonl(metrics))
        saved = (run_dir / "checkpoints").glob("step-*")
        checkpoint = max(int(p.name.split("-")[1]) for p in saved)
        resumed = train("--resume", str(run_dir), env=env)
        output, _ = resumed.communicate(timeout=300)
    finally:
        for process in (first, resumed):
            if process.poll() is None:
                process.kill()
        cluster.shutdown()
    assert resumed.returncode == 0, output[-3000:]
    assert "launcher: ray" in output
    steps = [s["step"] for s in read_jsonl(metrics)]
    assert steps == [*range(1, killed_at + 1), *range(checkpoint + 1, 7)]
