"""A sandbox for model-written programs: each program in its own confined child process.

:class:`Sandbox` runs a :class:`Job` (a program and the inputs of its tests) in a fresh
interpreter that confines itself before it loads the program (see
:mod:`thoughtmdp.envs.sandbox.confine`): own network and mount namespaces, an
unprivileged user when started as root, seccomp (no new processes, no exec, no signals to
others), and limits on memory, file size, CPU time and printed output. All tests of a
program run one after another in that child, each under its own timer; the parent keeps a
watchdog per test and a time limit for the whole program, kills the child's process group
when either passes, and starts a fresh child for the tests still to run when one dies.
What was achieved is reported in every :class:`RunReport` (``isolation``).

Runs happen on the calling thread, at most ``max_concurrency`` at a time;
:meth:`Sandbox.arun` runs them on the sandbox's own thread pool, so an asyncio loop keeps
running.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from thoughtmdp.envs.sandbox.jobs import (
    NOBODY,
    Job,
    Mode,
    Outcome,
    RunReport,
    SandboxConfig,
    SandboxError,
    Stop,
)
from thoughtmdp.envs.sandbox.process import Child, ChildDeadline, ProtocolError, workspace

__all__ = [
    "NOBODY",
    "Job",
    "Mode",
    "Outcome",
    "RunReport",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "Stop",
    "run_all",
]


class Sandbox:
    """Runs jobs in confined child processes; see the module docstring.

    Args:
        config: Limits and identity (default: :class:`SandboxConfig` defaults).
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._slots = threading.BoundedSemaphore(self.config.max_concurrency)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, job: Job, stop: Stop | None = None) -> RunReport:
        """Run ``job`` and return its outcomes (blocks; at most ``max_concurrency`` at once).

        Raises:
            SandboxError: If a child could not start or confine itself.
        """
        with self._slots:
            return _Execution(self.config, job, stop).run()

    async def arun(self, job: Job, stop: Stop | None = None) -> RunReport:
        """:meth:`run` on the sandbox's thread pool, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(self.run, job, stop))

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The sandbox's thread pool (``max_concurrency`` threads), started on first use."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.config.max_concurrency, thread_name_prefix="thoughtmdp-sandbox"
                )
            return self._executor

    def close(self) -> None:
        """Stop the thread pool (running jobs finish first)."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def probe(self) -> dict[str, Any]:
        """Run a trivial program and return the isolation report its child produced."""
        return self.run(Job("pass", "script", ("",))).isolation


class _Execution:
    """One run of a job: children started one after another until every test has run."""

    def __init__(self, config: SandboxConfig, job: Job, stop: Stop | None) -> None:
        self.config, self.job, self.stop = config, job, stop
        self.outcomes: list[Outcome] = []
        self.isolation: dict[str, Any] = {}
        self.done = False
        self.deadline = 0.0
        self._crash = ""
        self._loading = False

    def run(self) -> RunReport:
        start = time.monotonic()
        self.deadline = start + self.config.time_budget(len(self.job.inputs))
        user = self.config.user if os.geteuid() == 0 else None
        pids: list[int] = []
        with workspace(user, self.config.group) as (base, work):
            while not self.done and len(self.outcomes) < len(self.job.inputs):
                child = self._start(base, work, len(pids), user)
                pids.append(child.process.pid)
                try:
                    self._drive(child)
                finally:
                    ended = child.kill()
                self._after_child(child, ended)
        return RunReport(
            tuple(self.outcomes), self.isolation, tuple(pids), time.monotonic() - start
        )

    def _start(self, base: str, work: str, tag: int, user: int | None) -> Child:
        first = len(self.outcomes)
        cfg = self.config
        remaining = max(1, int(self.deadline - time.monotonic()) + 1)
        job = {
            "source": self.job.source, "mode": self.job.mode, "entry": self.job.entry,
            "preload": list(self.job.preload),
            "solution_class": self.job.solution_class, "inputs": list(self.job.inputs[first:]),
            "line_offset": self.job.line_offset,
            "test_timeout": cfg.test_timeout, "output_limit": cfg.output_bytes,
            "limits": {
                "uid": user, "gid": cfg.group if cfg.group is not None else user,
                "memory": cfg.memory_bytes, "file_size": cfg.file_size_bytes,
                "cpu_seconds": remaining, "open_files": len(self.job.inputs) + 64,
                "parent_pid": os.getpid(),
            },
        }  # fmt: skip
        max_message = 8 * cfg.output_bytes + (1 << 20)
        return Child(cfg.python, cfg.site_packages, job, base, work, tag, max_message)

    def _drive(self, child: Child) -> None:
        """Read the child's reports until it is done, dies, hangs or ``stop`` ends the run."""
        self._crash = ""
        ready = self._report(child, child.started + self.config.startup_timeout)
        if ready is None and self._crash == "program time limit":
            return None
        if ready is None or ready.get("event") != "ready":
            raise SandboxError(
                f"the sandbox child did not start (got {ready!r}); its stderr:\n"
                f"{child.stderr_tail() or '(empty)'}"
            )
        self.isolation = dict(ready.get("isolation", {}))
        self._loading = True
        loaded = self._report(child, self._test_deadline())
        if loaded is None or loaded.get("event") != "loaded":
            return self._load_failed(loaded)
        self._loading = False
        first = len(self.outcomes)
        for index in range(first, len(self.job.inputs)):
            report = self._report(child, self._test_deadline())
            if report is None:
                return  # died or hung: _after_child records the test
            if report.get("event") != "test" or report.get("index") != index - first:
                self._crash = "protocol: the program disturbed the report channel"
                return
            self._record(_outcome(report))
            if report.get("poisoned"):
                self._crash = "restart"  # a thread outlived its test: next tests, next child
            if self.done or self._crash:
                return
        return None

    def _report(self, child: Child, deadline: float) -> dict[str, Any] | None:
        try:
            return child.next_report(min(deadline, self.deadline))
        except ChildDeadline:
            overall = time.monotonic() >= self.deadline
            self._crash = "program time limit" if overall else "test time limit"
        except ProtocolError as exc:
            self._crash = f"protocol: the program disturbed the report channel ({exc})"
        return None

    def _test_deadline(self) -> float:
        return time.monotonic() + self.config.test_timeout + self.config.grace

    def _load_failed(self, report: dict[str, Any] | None) -> None:
        if report is None:
            return  # the child died or hung while loading: _after_child records it
        self._loading = False
        status = "load_timeout" if report.get("status") == "timeout" else "load_error"
        outcome = Outcome(status, error=str(report.get("error", "")))
        while not self.done and len(self.outcomes) < len(self.job.inputs):
            self._record(outcome)

    def _after_child(self, child: Child, ended: str) -> None:
        if self.done or len(self.outcomes) >= len(self.job.inputs) or self._crash == "restart":
            return
        if self._crash == "program time limit":
            budget = self.config.time_budget(len(self.job.inputs))
            outcome = Outcome("timeout", error=f"the program ran past its {budget:g} s in total")
        elif self._crash == "test time limit":
            limit = self.config.test_timeout
            outcome = Outcome("timeout", error=f"killed: no result after {limit:g} s")
        elif self._crash:
            outcome = Outcome("crashed", error=self._crash)
        else:
            outcome = Outcome("crashed", error=f"the test process ended ({ended})")
        if self._loading:
            where = "while loading the program"  # a fresh child would fail the same way
            outcome = Outcome(outcome.status, error=f"{outcome.error} {where}")
        self._record(outcome)
        while self._loading or self._crash == "program time limit":
            if self.done or len(self.outcomes) >= len(self.job.inputs):
                break
            self._record(outcome)

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.stop is not None and self.stop(len(self.outcomes) - 1, outcome):
            self.done = True


def _outcome(report: dict[str, Any]) -> Outcome:
    seconds = report.get("seconds")
    return Outcome(
        status=str(report.get("status", "error")),
        output=report.get("output") if isinstance(report.get("output"), str) else None,
        value=report.get("value") if isinstance(report.get("value"), str) else None,
        error=str(report.get("error", "")),
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
    )


def run_all(sandbox: Sandbox, jobs: Sequence[Job]) -> list[RunReport]:
    """Run several jobs on the sandbox's thread pool and return their reports in order.

    Args:
        sandbox: The sandbox.
        jobs: The jobs.

    Returns:
        One report per job.
    """
    return list(sandbox.executor.map(sandbox.run, jobs))
