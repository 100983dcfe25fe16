"""What keeps a `thoughtmdp train` run together: parent death, process groups, shm, locks."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from thoughtmdp.training import launch, run_folder
from thoughtmdp.training.lifeline import PARENT_ENV

SHM_HOLDER = """
import signal, sys, time
from multiprocessing import shared_memory
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a child that does not stop when asked
block = shared_memory.SharedMemory(create=True, size=4096)
print(block.name, flush=True)
time.sleep(120)
"""


def gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def test_a_child_that_ignores_sigterm_is_killed_and_its_shared_memory_removed(tmp_path):
    log = tmp_path / "child.log"
    out = open(log, "ab")  # noqa: SIM115 (the Child closes it)
    process = subprocess.Popen(
        [sys.executable, "-c", SHM_HOLDER], stdout=out, start_new_session=True
    )
    child = launch.Child("actor-0", process, log, out)
    deadline = time.monotonic() + 30
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    shm = Path("/dev/shm") / log.read_text().split()[0]
    assert shm.exists()
    child.end(signal.SIGTERM, grace_s=0.5)
    assert process.returncode == -signal.SIGKILL
    assert not shm.exists()


LAUNCHER = """
import os, subprocess, sys, time
from thoughtmdp.training.lifeline import PARENT_ENV, die_with_parent
parent = os.getpid()
child = subprocess.Popen(
    [sys.executable, "-c", {child!r}],
    env={{**os.environ, PARENT_ENV: str(parent)}},
    start_new_session=True,
    preexec_fn=lambda: die_with_parent(parent),
)
time.sleep(120)
"""

CHILD = """
import signal, subprocess, sys, time
from thoughtmdp.training.lifeline import watch_parent
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stuck: only the group kill ends it
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
watch_parent(grace_s=0.5)
print(grandchild.pid, flush=True)
time.sleep(120)
"""


def test_children_and_grandchildren_die_with_a_killed_launcher(tmp_path):
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER.format(child=CHILD)], stdout=subprocess.PIPE, text=True
    )
    grandchild = int(launcher.stdout.readline())
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    assert len(children) == 1
    launcher.kill()
    launcher.wait()
    assert gone(int(children[0])), "the child outlived the launcher"
    assert gone(grandchild), "the child's own child (an engine process) outlived it"


def test_children_learn_who_their_parent_is_and_vllm_binds_no_core_unless_told(monkeypatch):
    monkeypatch.delenv(launch.CPU_BIND_ENV, raising=False)
    env = launch.child_environment(threads=3)
    assert env[launch.CPU_BIND_ENV] == "nobind"
    assert env[PARENT_ENV] == str(os.getpid()) and env["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv(launch.CPU_BIND_ENV, "0-3")
    assert launch.child_environment(threads=1)[launch.CPU_BIND_ENV] == "0-3"


def test_a_second_process_cannot_train_into_a_locked_folder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import time
                from pathlib import Path
                from thoughtmdp.training.run_folder import lock
                held = lock(Path({str(tmp_path)!r}))
                print("locked", flush=True)
                time.sleep(120)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        message = (
            f"{tmp_path} is in use by another thoughtmdp train (pid {holder.pid}, "
            f"{tmp_path / 'train.lock'}); wait for it or choose another run_dir"
        )
        with pytest.raises(run_folder.RunFolderBusy, match=f"^{re.escape(message)}$"):
            run_folder.lock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    held = run_folder.lock(tmp_path)  # the dead holder's lock is taken over
    assert (tmp_path / "train.lock").read_text() == f"{os.getpid()}\n"
    held.close()


def test_a_lock_file_left_by_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "train.lock").write_text("999999999\n")
    held = run_folder.lock(tmp_path)
    assert (tmp_path / "train.lock").read_text() == f"{os.getpid()}\n"
    held.close()


def test_train_refuses_an_existing_run_at_once_and_resume_needs_a_run(tmp_path, capsys):
    from thoughtmdp.cli import main

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    assert main(["train", f"run_dir={run_dir}"]) == 2
    assert capsys.readouterr().err == (
        f"thoughtmdp train: {run_dir} already holds a run; continue it with "
        f"`thoughtmdp train --resume {run_dir}` or choose another run_dir\n"
    )
    empty = tmp_path / "empty"
    assert main(["train", "--resume", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"thoughtmdp train: --resume {empty}: no run there (neither configs/train.yaml nor "
        "config.yaml); start a new run without --resume\n"
    )


def test_a_resumed_learner_skips_episodes_from_before_its_checkpoint(tokenizer):
    from test_learner import hand_episode

    from thoughtmdp.learners.stream import BatchAssembler

    class Source:
        def __init__(self, episodes):
            self.items = queue.Queue()
            for episode in episodes:
                self.items.put(("actor-0", episode))

        def get(self, timeout=None):
            return self.items.get(timeout=timeout)

    old, fresh = hand_episode(tokenizer, version=3), hand_episode(tokenizer, version=9)
    assembler = BatchAssembler(
        Source([old, fresh, fresh]), 2, max_lag=1, skip_stale=False, oldest_version=9
    )
    batch, metrics = assembler.next_batch(version=10)
    assert batch == [fresh, fresh]
    assert metrics["staleness/skipped"] == 1.0 and metrics["staleness/reweighted"] == 0.0
