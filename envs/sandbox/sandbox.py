"""A sandbox for model-written programs: each program in its own confined child process.

:class:`Sandbox` runs a :class:`Job` (a program and the inputs of its tests) in a fresh
interpreter that confines itself before it loads the program (see
:mod:`thoughtmdp.envs.sandbox.confine`): own network, mount, IPC and PID namespaces (and a
user namespace as a normal user), a minimal read-only file system holding only the
interpreter, its libraries and packages and a private size-limited tmpfs as its working
folder, an unprivileged user of its own, seccomp (no new processes, no exec, no signals to
others), and limits on
memory, file size, threads, CPU time and printed output. All tests of a
program run one after another in that child, each under its own timer; the parent keeps a
watchdog per test and a time limit for the whole program, kills the child's process group
when either passes, and starts a fresh child for the tests still to run when one dies.
What was achieved is reported in every :class:`RunReport` (``isolation``); where the
namespaces or the file system view cannot be made, runs raise :class:`SandboxError` unless
``SandboxConfig(isolation="weak")``.

Runs happen on the calling thread, at most ``max_concurrency`` at a time;
:meth:`Sandbox.arun` runs them on the sandbox's own thread pool, so an asyncio loop keeps
running.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from thoughtmdp.envs.sandbox.execution import Execution
from thoughtmdp.envs.sandbox.jobs import (
    NOBODY,
    PER_CHILD,
    Job,
    Mode,
    Outcome,
    RunReport,
    SandboxConfig,
    SandboxError,
    Stop,
)

__all__ = [
    "NOBODY",
    "PER_CHILD",
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
            return Execution(self.config, job, stop).run()

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
        return self.run(Job(source="pass", mode="script", inputs=("",))).isolation


def run_all(sandbox: Sandbox, jobs: Sequence[Job]) -> list[RunReport]:
    """Run several jobs on the sandbox's thread pool and return their reports in order.

    Args:
        sandbox: The sandbox.
        jobs: The jobs.

    Returns:
        One report per job.
    """
    return list(sandbox.executor.map(sandbox.run, jobs))
