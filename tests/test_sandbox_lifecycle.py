"""The lifecycle of sandbox children, driven by scripted children (no processes started).

Each scripted child answers ``next_report`` from a list: a report, or the exception the
real child raises when it ends (``ChildEnded``), goes quiet (``ChildDeadline``) or sends
garbage (``ProtocolError``). The run's outcomes show which state each child ended in.
"""

from __future__ import annotations

import re
import types
from typing import Any

import pytest

from thoughtmdp.envs.sandbox import execution
from thoughtmdp.envs.sandbox.execution import LIVE_STATES, NEXT_STATES, ChildState, Execution
from thoughtmdp.envs.sandbox.jobs import Job, Outcome, RunReport, SandboxConfig, SandboxError
from thoughtmdp.envs.sandbox.process import ChildDeadline, ChildEnded, ProtocolError

READY = {"event": "ready", "isolation": {"network": "scripted"}}
LOADED = {"event": "loaded"}


def passed(index: int, output: str, **extra: Any) -> dict[str, Any]:
    """The report of a test that printed ``output``."""
    return {"event": "test", "index": index, "status": "ok", "output": output, **extra}


class ScriptedChild:
    """Stands in for :class:`~thoughtmdp.envs.sandbox.process.Child`."""

    def __init__(self, script: list[Any], tag: int) -> None:
        self.script = script
        self.process = types.SimpleNamespace(pid=1000 + tag)
        self.started = 0.0

    def next_report(self, deadline: float) -> dict[str, Any]:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return dict(step)

    def kill(self) -> str:
        return "exit code 3"

    def stderr_tail(self) -> str:
        return ""


def run(
    monkeypatch: pytest.MonkeyPatch,
    scripts: list[list[Any]],
    inputs: int,
    stop: Any = None,
    **config: Any,
) -> RunReport:
    """Run a job of ``inputs`` tests; the n-th child started follows ``scripts[n]``."""
    monkeypatch.setattr(execution, "Child", lambda tag, **_: ScriptedChild(scripts[tag], tag))
    job = Job(source="", mode="script", inputs=("",) * inputs)
    report = Execution(SandboxConfig(test_timeout=2.0, **config), job, stop).run()
    assert all(not script for script in scripts), "every scripted report was read"
    return report


def test_every_test_reported_finishes_with_one_child(monkeypatch: pytest.MonkeyPatch) -> None:
    report = run(monkeypatch, [[READY, LOADED, passed(0, "a"), passed(1, "b")]], inputs=2)
    assert report.outcomes == (Outcome("ok", output="a"), Outcome("ok", output="b"))
    assert report.pids == (1000,)
    assert report.isolation == {"network": "scripted"}


def test_a_poisoned_test_restarts_the_rest_in_a_fresh_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripts = [
        [READY, LOADED, passed(0, "a", poisoned=True)],
        [READY, LOADED, passed(0, "b")],
    ]
    report = run(monkeypatch, scripts, inputs=2)
    assert report.outcomes == (Outcome("ok", output="a"), Outcome("ok", output="b"))
    assert report.pids == (1000, 1001)


def test_a_child_that_dies_fails_one_test(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = [[READY, LOADED, ChildEnded()], [READY, LOADED, passed(0, "b")]]
    report = run(monkeypatch, scripts, inputs=2)
    assert report.outcomes == (
        Outcome("crashed", error="the test process ended (exit code 3)"),
        Outcome("ok", output="b"),
    )


def test_a_silent_test_times_out_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = [[READY, LOADED, ChildDeadline()], [READY, LOADED, passed(0, "b")]]
    report = run(monkeypatch, scripts, inputs=2)
    assert report.outcomes == (
        Outcome("timeout", error="killed: no result after 2 s"),
        Outcome("ok", output="b"),
    )


def test_the_program_time_limit_fails_every_test_left(monkeypatch: pytest.MonkeyPatch) -> None:
    report = run(monkeypatch, [[ChildDeadline()]], inputs=2, program_timeout=0.0)
    expected = Outcome("timeout", error="the program ran past its 0 s in total")
    assert report.outcomes == (expected, expected)


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        (passed(1, "skipped ahead"), "protocol: the program disturbed the report channel"),
        (
            ProtocolError("a report that is not JSON"),
            "protocol: the program disturbed the report channel (a report that is not JSON)",
        ),
    ],
)
def test_a_broken_report_channel_fails_one_test(
    monkeypatch: pytest.MonkeyPatch, broken: Any, error: str
) -> None:
    scripts = [[READY, LOADED, broken], [READY, LOADED, passed(0, "b")]]
    report = run(monkeypatch, scripts, inputs=2)
    assert report.outcomes == (Outcome("crashed", error=error), Outcome("ok", output="b"))


def test_a_failure_while_loading_fails_every_test(monkeypatch: pytest.MonkeyPatch) -> None:
    report = run(monkeypatch, [[READY, ChildEnded()]], inputs=3)
    error = "the test process ended (exit code 3) while loading the program"
    assert report.outcomes == (Outcome("crashed", error=error),) * 3
    assert report.pids == (1000,)


def test_a_program_that_does_not_load_fails_until_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {"event": "load_failed", "status": "timeout", "error": "loading timed out"}
    report = run(monkeypatch, [[READY, failed]], inputs=3, stop=lambda index, _: index == 1)
    assert report.outcomes == (Outcome("load_timeout", error="loading timed out"),) * 2


def test_a_child_that_never_gets_ready_is_a_sandbox_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = "the sandbox child did not start (got None); its stderr:\n(empty)"
    with pytest.raises(SandboxError, match=f"^{re.escape(message)}$"):
        run(monkeypatch, [[ChildEnded()]], inputs=1)


def test_only_live_states_move_and_each_can_end() -> None:
    assert set(NEXT_STATES) == LIVE_STATES
    for state, following in NEXT_STATES.items():
        assert following - LIVE_STATES, f"{state} can never end"
    ended = set(ChildState) - LIVE_STATES
    assert ended == set().union(*NEXT_STATES.values()) - LIVE_STATES
