"""One run of a job in the sandbox: the lifecycle of its children and the loop that drives it.

A run starts a child, moves it through :class:`ChildState` one report at a time, records
an outcome for the test it was on if it ended badly, and starts a fresh child for the
tests still to run.
"""

from __future__ import annotations

import enum
import os
import time
from typing import Any, NamedTuple

from thoughtmdp.envs.sandbox.jobs import Job, Outcome, RunReport, SandboxConfig, SandboxError, Stop
from thoughtmdp.envs.sandbox.process import (
    Child,
    ChildDeadline,
    ChildEnded,
    ProtocolError,
    workspace,
)


class ChildState(enum.Enum):
    """Where one child of a run stands, seen from the parent.

    A child goes through the live states ``STARTING``, ``LOADING`` and ``TESTING`` and
    ends in one of the others; :data:`NEXT_STATES` lists every allowed move.
    """

    STARTING = "starting"
    """Started; confining itself, until it reports ``ready``."""
    LOADING = "loading"
    """Confined; loading the program, until it reports ``loaded``."""
    TESTING = "testing"
    """Running the tests, one report each."""
    FINISHED = "finished"
    """Nothing left for it: every test has an outcome, or ``stop`` ended the run."""
    MUST_RESTART = "must restart"
    """A thread outlived its test: the tests still to run need a fresh child."""
    DIED = "died"
    """It closed its report channel early: the program took the process down."""
    TEST_TIMED_OUT = "test timed out"
    """No report within the test's time limit (plus grace)."""
    PROGRAM_TIMED_OUT = "program timed out"
    """No report before the whole program's time limit."""
    BROKE_PROTOCOL = "broke protocol"
    """It sent something other than the report expected: the program disturbed the channel."""


LIVE_STATES = frozenset({ChildState.STARTING, ChildState.LOADING, ChildState.TESTING})
_FAILED = {
    ChildState.DIED,
    ChildState.TEST_TIMED_OUT,
    ChildState.PROGRAM_TIMED_OUT,
    ChildState.BROKE_PROTOCOL,
}
NEXT_STATES: dict[ChildState, frozenset[ChildState]] = {
    # any other failure while starting is the sandbox's own (SandboxError), not a state
    ChildState.STARTING: frozenset({ChildState.LOADING, ChildState.PROGRAM_TIMED_OUT}),
    ChildState.LOADING: frozenset({ChildState.TESTING, ChildState.FINISHED, *_FAILED}),
    ChildState.TESTING: frozenset(
        {ChildState.TESTING, ChildState.FINISHED, ChildState.MUST_RESTART, *_FAILED}
    ),
}
"""The moves a live child may make; an ended child makes none."""
BROKEN_CHANNEL = "protocol: the program disturbed the report channel"
STATUSES = frozenset({"ok", "error", "timeout", "output_limit"})
"""The statuses a child reports for a test."""


class _Ending(NamedTuple):
    """How a child ended: its last state and the live state it ended from."""

    state: ChildState
    phase: ChildState
    problem: str = ""  # what broke the protocol


class Execution:
    """One run of a job: children started one after another until every test has an outcome.

    Args:
        config: The sandbox's limits.
        job: The job.
        stop: Called after each test; returning True ends the run.
    """

    def __init__(self, config: SandboxConfig, job: Job, stop: Stop | None) -> None:
        self.config, self.job, self.stop = config, job, stop
        self.outcomes: list[Outcome] = []
        self.isolation: dict[str, Any] = {}
        self.stopped = False
        self.deadline = 0.0
        self._first = 0  # the index of the current child's first test

    @property
    def finished(self) -> bool:
        """Whether every test has an outcome or ``stop`` ended the run."""
        return self.stopped or len(self.outcomes) >= len(self.job.inputs)

    def run(self) -> RunReport:
        """Run every test, starting a fresh child whenever one ends early.

        Raises:
            SandboxError: If a child could not start or confine itself.
        """
        start = time.monotonic()
        self.deadline = start + self.config.time_budget(len(self.job.inputs))
        user = self.config.user if os.geteuid() == 0 else None
        pids: list[int] = []
        fixed = user if isinstance(user, int) else None  # a per-child user owns its own
        with workspace(fixed, self.config.group) as (base, work):
            while not self.finished:
                child = self._start(base, work, tag=len(pids), user=user)
                pids.append(child.process.pid)
                try:
                    ending = self._drive(child)
                finally:
                    exit_status = child.kill()
                self._settle(ending, exit_status)
        return RunReport(
            outcomes=tuple(self.outcomes),
            isolation=self.isolation,
            pids=tuple(pids),
            seconds=time.monotonic() - start,
        )

    def _start(self, base: str, work: str, tag: int, user: int | str | None) -> Child:
        self._first = len(self.outcomes)
        cfg = self.config
        remaining = max(1, int(self.deadline - time.monotonic()) + 1)
        job = {
            "source": self.job.source, "mode": self.job.mode, "entry": self.job.entry,
            "preload": list(self.job.preload),
            "solution_class": self.job.solution_class,
            "inputs": list(self.job.inputs[self._first:]),
            "line_offset": self.job.line_offset,
            "test_timeout": cfg.test_timeout, "output_limit": cfg.output_bytes,
            "limits": {
                "uid": user, "gid": cfg.group,
                "memory": cfg.memory_bytes, "file_size": cfg.file_size_bytes,
                "cpu_seconds": remaining if cfg.cpu_seconds is None else cfg.cpu_seconds,
                "open_files": len(self.job.inputs) + 64, "isolation": cfg.isolation,
                "threads": cfg.threads, "work_bytes": cfg.work_bytes,
                "work_files": cfg.work_files, "parent_pid": os.getpid(),
            },
        }  # fmt: skip
        return Child(
            python=cfg.python,
            site_packages=cfg.site_packages,
            job=job,
            base=base,
            work=work,
            tag=tag,
            max_message=8 * cfg.output_bytes + (1 << 20),
        )

    def _drive(self, child: Child) -> _Ending:
        """Move the child from state to state, one report at a time, until it ends.

        Raises:
            SandboxError: If the child failed before it reported ``ready``.
        """
        steps = {
            ChildState.STARTING: self._await_ready,
            ChildState.LOADING: self._await_load,
            ChildState.TESTING: self._await_test,
        }
        state, problem = ChildState.STARTING, ""
        while True:
            try:
                next_state = steps[state](child)
            except ChildEnded:
                next_state = ChildState.DIED
            except ChildDeadline:
                overall = time.monotonic() >= self.deadline
                next_state = ChildState.PROGRAM_TIMED_OUT if overall else ChildState.TEST_TIMED_OUT
            except ProtocolError as exc:
                next_state = ChildState.BROKE_PROTOCOL
                problem = f"{BROKEN_CHANNEL} ({exc})" if exc.args else BROKEN_CHANNEL
            if state is ChildState.STARTING and next_state not in NEXT_STATES[state]:
                raise _not_started(child, None)
            assert next_state in NEXT_STATES[state], f"{state} -> {next_state}"
            if next_state not in LIVE_STATES:
                return _Ending(next_state, state, problem)
            state = next_state

    def _await_ready(self, child: Child) -> ChildState:
        ready = self._next_report(child, child.started + self.config.startup_timeout)
        if ready.get("event") == "refused":
            raise SandboxError(refusal(_text(ready.get("error"), limit=300) or "unknown"))
        if ready.get("event") != "ready":
            raise _not_started(child, ready)
        self.isolation = dict(ready.get("isolation", {}))
        return ChildState.LOADING

    def _await_load(self, child: Child) -> ChildState:
        report = self._next_report(child, self._test_deadline())
        if report.get("event") == "loaded":
            return ChildState.TESTING
        status = "load_timeout" if report.get("status") == "timeout" else "load_error"
        self._record_rest(Outcome(status, error=_text(report.get("error"), limit=2000) or ""))
        return ChildState.FINISHED

    def _await_test(self, child: Child) -> ChildState:
        report = self._next_report(child, self._test_deadline())
        if report.get("event") != "test" or report.get("index") != len(self.outcomes) - self._first:
            raise ProtocolError  # no detail: the outcome says only that the channel broke
        self._record(_outcome(report))
        if self.finished:
            return ChildState.FINISHED
        return ChildState.MUST_RESTART if report.get("poisoned") else ChildState.TESTING

    def _next_report(self, child: Child, deadline: float) -> dict[str, Any]:
        return child.next_report(min(deadline, self.deadline))

    def _test_deadline(self) -> float:
        return time.monotonic() + self.config.test_timeout + self.config.grace

    def _settle(self, ending: _Ending, exit_status: str) -> None:
        """Record the outcome of the test a failed child was on, or of every test left."""
        if ending.state in (ChildState.FINISHED, ChildState.MUST_RESTART):
            return
        if ending.state is ChildState.PROGRAM_TIMED_OUT:
            budget = self.config.time_budget(len(self.job.inputs))
            outcome = Outcome("timeout", error=f"the program ran past its {budget:g} s in total")
        elif ending.state is ChildState.TEST_TIMED_OUT:
            limit = self.config.test_timeout
            outcome = Outcome("timeout", error=f"killed: no result after {limit:g} s")
        elif ending.state is ChildState.BROKE_PROTOCOL:
            outcome = Outcome("crashed", error=ending.problem)
        else:
            outcome = Outcome("crashed", error=f"the test process ended ({exit_status})")
        if ending.phase is ChildState.LOADING:
            # a fresh child would fail the same way: every test gets this outcome
            where = f"{outcome.error} while loading the program"
            self._record_rest(Outcome(outcome.status, error=where))
        elif ending.state is ChildState.PROGRAM_TIMED_OUT:
            self._record_rest(outcome)  # no time is left for the tests still to run
        else:
            self._record(outcome)

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.stop is not None and self.stop(len(self.outcomes) - 1, outcome):
            self.stopped = True

    def _record_rest(self, outcome: Outcome) -> None:
        while not self.finished:
            self._record(outcome)


def refusal(missing: str) -> str:
    """The one-line message of a sandbox that will not run programs with weak isolation."""
    return (
        f"the sandbox refuses to run untrusted programs here: {missing}; run as root, allow "
        "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
        "user.max_user_namespaces > 0), or accept a weaker confinement with "
        'SandboxConfig(isolation="weak") (eval-code --isolation weak)'
    )


def _not_started(child: Child, report: dict[str, Any] | None) -> SandboxError:
    return SandboxError(
        f"the sandbox child did not start (got {report!r}); its stderr:\n"
        f"{child.stderr_tail() or '(empty)'}"
    )


def _outcome(report: dict[str, Any]) -> Outcome:
    """The outcome a test report describes; fields of the wrong type count as absent."""
    status, seconds = report.get("status"), report.get("seconds")
    if status not in STATUSES:
        status = "error"
    return Outcome(
        status=status,
        output=_text(report.get("output")),
        value=_text(report.get("value")),
        error=_text(report.get("error"), limit=2000) or "",
        seconds=float(seconds) if type(seconds) is float and 0 <= seconds < 1e9 else None,
    )


def _text(value: Any, limit: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    return value if limit is None else value[:limit]
