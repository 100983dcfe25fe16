"""The math verifier's worker processes: they work from any program, and a broken setup raises.

The worker is a fresh interpreter that never imports the caller's main module, so a script
that builds the task at top level (no ``if __name__ == "__main__":``) scores correctly, and
a worker that cannot start raises :class:`VerifierUnavailable` instead of scoring answers 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from thoughtmdp.envs.math.task import MathTask
from thoughtmdp.errors import ThoughtMDPError, VerifierTimeout, VerifierUnavailable
from thoughtmdp.isolation import WorkerCrashed, WorkerStartError
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.types import Problem

SCRIPT = """\
import gymnasium
import thoughtmdp
from thoughtmdp.envs.math.task import MathTask
from thoughtmdp.types import Problem

DATA = {data!r}
task = MathTask(DATA, timeout=5.0)
problem = Problem("t/0", "q", "12", "t")
right = task.score(problem, [r"so \\boxed{{12}}"])
wrong = task.score(problem, [r"so \\boxed{{13}}"])
assert (right.reward, wrong.reward) == (1.0, 0.0), (right, wrong)
print("task", right.reward, wrong.reward, wrong.info["reason"])
env = gymnasium.make("thoughtmdp/Math-v0", data=DATA)
env.reset(options={{"problem": 0}})
_, good, _, _, info = env.step(r"\\boxed{{12}}")
assert "error" not in info["verifier"], info
env.reset(options={{"problem": 0}})
_, bad, _, _, _ = env.step(r"\\boxed{{11}}")
print("env", good, bad)
"""
EXPECTED = ["task 1.0 0.0 wrong answer", "env 1.0 0.0"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.jsonl"
    path.write_text(json.dumps({"problem": "What is 3*4?", "answer": "12"}) + "\n")
    return path


def run(command: list[str], cwd: Path) -> list[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_script_without_main_guard_scores_right_and_wrong(data: Path, tmp_path: Path) -> None:
    script = tmp_path / "score_at_top_level.py"
    script.write_text(SCRIPT.format(data=str(data)))
    # once each: a worker that imported the script would run it again and print more lines
    assert run([sys.executable, str(script)], tmp_path) == EXPECTED


def test_python_c_scores_right_and_wrong(data: Path, tmp_path: Path) -> None:
    assert run([sys.executable, "-c", SCRIPT.format(data=str(data))], tmp_path) == EXPECTED


def test_worker_that_cannot_start_raises_instead_of_scoring_zero(data: Path) -> None:
    task = MathTask(data, timeout=5.0)
    env = ThoughtMDPEnv(task)
    try:
        for worker in task._verifier.workers:
            worker.executable = "/nonexistent/python"
        problem = Problem("t/0", "q", "12", "t")
        with pytest.raises(VerifierUnavailable, match=r"math-verify .*'/nonexistent/python'"):
            task.score(problem, [r"\boxed{12}"])
        env.reset(options={"problem": 0})
        with pytest.raises(WorkerStartError, match="could not start the worker process"):
            env.step(r"\boxed{12}")
        assert issubclass(WorkerStartError, VerifierUnavailable)
        assert issubclass(VerifierUnavailable, ThoughtMDPError)
    finally:
        env.close()


def test_worker_that_dies_while_starting_raises(data: Path) -> None:
    task = MathTask(data, timeout=5.0)
    try:
        for worker in task._verifier.workers:
            worker.executable = "false"  # starts, then exits 1 before it reports ready
        with pytest.raises(WorkerStartError, match=r"exited before it was ready \(exit code 1\)"):
            task.score(Problem("t/0", "q", "12", "t"), [r"\boxed{12}"])
    finally:
        task.close()


class FakePool:
    """Stands in for the verifier pool: crashes on some calls, verifies ``1 = 1``."""

    def __init__(self, crash_on_probe: bool) -> None:
        self.crash_on_probe = crash_on_probe
        self.calls: list[tuple[str, str]] = []

    def __call__(self, answer: str, gold: str, limit: float) -> tuple[bool, str | None]:
        self.calls.append((answer, gold))
        if (answer, gold) == ("1", "1") and not self.crash_on_probe:
            return True, None
        raise WorkerCrashed("the worker died (killed by signal SIGSEGV)")

    def close(self) -> None:
        pass


def test_answer_that_crashes_the_worker_is_a_zero_but_a_broken_worker_raises(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = MathTask(data, timeout=5.0)
    problem = Problem("t/0", "q", "12", "t")
    pool = FakePool(crash_on_probe=False)
    monkeypatch.setattr(task, "_verifier", pool)
    score = task.score(problem, [r"\boxed{12}"])
    assert score.reward == 0.0 and score.info["reason"].startswith("verifier error: WorkerCrashed")
    assert pool.calls == [("12", "12"), ("12", "12"), ("1", "1")]
    monkeypatch.setattr(task, "_verifier", FakePool(crash_on_probe=True))
    with pytest.raises(VerifierUnavailable, match=r"math-verify .* keeps failing.*1 against 1"):
        task.score(problem, [r"\boxed{12}"])


def test_answer_that_times_out_is_still_a_zero_with_its_reason(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = MathTask(data, timeout=5.0)

    def slow(*args: object) -> None:
        raise VerifierTimeout("too slow")

    monkeypatch.setattr(task, "_verifier", slow)
    score = task.score(Problem("t/0", "q", "12", "t"), [r"\boxed{12}"])
    assert (score.reward, score.info["reason"]) == (0.0, "timeout")
