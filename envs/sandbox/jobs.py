"""The data of the sandbox: its configuration, a job, and what a run reports."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from thoughtmdp.errors import VerifierUnavailable

NOBODY = 65534
PER_CHILD: Literal["per-child"] = "per-child"
"""``SandboxConfig.user`` for a user of its own per child (see ``confine``)."""
Mode = Literal["call", "function", "script"]
Isolation = Literal["strict", "weak"]
ISOLATION_LEVELS = ("strict", "weak")


class SandboxError(VerifierUnavailable):
    """The sandbox itself failed (the child could not start); not a verdict on a program.

    As a :class:`~thoughtmdp.errors.VerifierUnavailable`, it stops the episode that needed the
    verdict instead of being scored as a failed program.
    """


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and identity of sandboxed programs.

    Attributes:
        test_timeout: Seconds one test may take (wall clock).
        program_timeout: Seconds for the whole program, start-up included; ``None`` for
            ``lcb_runner``'s ``(test_timeout + 1) * tests + 5``.
        memory_bytes: Address-space limit of the child.
        file_size_bytes: Largest file the program may write.
        output_bytes: Most bytes a test may print; beyond, the test fails.
        max_concurrency: Children running at once.
        user: The user to run as when started as root: ``"per-child"`` (the default) for
            a user id of its own per child, so that no child can signal, trace or
            re-limit another and ``threads`` counts one child's threads; a number for a
            fixed user (``NOBODY``, say), shared by every child; ``None`` keeps root, which
            is far weaker.
        group: Its group (default: the same number as ``user``).
        threads: Threads a program may run at once (``RLIMIT_NPROC``, applied where the
            child's user is its own: per-child users, or a user namespace).
        work_bytes: Size of the program's working folder (a private tmpfs).
        work_files: Files and folders the working folder may hold.
        isolation: ``"strict"`` (the default) runs programs only where the child achieves
            network, mount and PID namespaces and the minimal file system view (as root,
            or as a normal user with unprivileged user namespaces); elsewhere every run
            raises :class:`SandboxError`. ``"weak"`` runs them with whatever confinement
            the machine allows (seccomp and limits at least): the program may then read
            the host's world-readable files and, as a normal user, keeps that user's rights.
        cpu_seconds: CPU time the child may use (``RLIMIT_CPU``; past it the test is a time
            limit); ``None`` for the program's whole time budget.
        python: The interpreter of the child.
        site_packages: Whether programs may import installed packages (numpy, ...).
        startup_timeout: Seconds a child may take to start and confine itself.
        grace: Seconds past ``test_timeout`` before the parent kills a stuck test.
    """

    test_timeout: float = 6.0
    program_timeout: float | None = None
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 16 << 20
    output_bytes: int = 16 << 20
    max_concurrency: int = 2
    user: int | Literal["per-child"] | None = PER_CHILD
    group: int | None = None
    threads: int = 64
    work_bytes: int = 64 << 20
    work_files: int = 4096
    isolation: Isolation = "strict"
    cpu_seconds: float | None = None
    python: str = sys.executable
    site_packages: bool = True
    startup_timeout: float = 30.0
    grace: float = 1.0

    def __post_init__(self) -> None:
        for name in ("test_timeout", "memory_bytes", "file_size_bytes", "output_bytes",
                     "threads", "work_bytes", "work_files"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"SandboxConfig.{name} must be positive, got {getattr(self, name)}"
                )
        if self.isolation not in ISOLATION_LEVELS:
            raise ValueError(
                f"SandboxConfig.isolation must be 'strict' or 'weak', got {self.isolation!r}"
            )
        if self.cpu_seconds is not None and not self.cpu_seconds > 0:
            raise ValueError(f"SandboxConfig.cpu_seconds must be positive, got {self.cpu_seconds}")
        if self.max_concurrency < 1:
            raise ValueError(
                f"SandboxConfig.max_concurrency must be >= 1, got {self.max_concurrency}"
            )

    def time_budget(self, tests: int) -> float:
        """Seconds the whole program may take for ``tests`` tests."""
        if self.program_timeout is not None:
            return self.program_timeout
        return (self.test_timeout + 1) * tests + 5


@dataclass(frozen=True)
class Job:
    """A program and the inputs of its tests.

    Attributes:
        source: The program, ready to load as it is.
        mode: ``"call"`` (call ``entry`` with the JSON arguments of each input),
            ``"function"`` (call ``entry`` with stdin set to each input) or ``"script"``
            (execute the whole source as ``__main__`` per input).
        inputs: One input per test.
        entry: The function (``call``/``function`` modes; unused by ``script``).
        solution_class: Look ``entry`` up on a ``Solution()`` instance (``call`` mode).
        line_offset: Lines added before the model's code, taken off syntax-error lines.
        preload: Modules the child imports before it confines itself, so the program finds
            them even where their files become unreachable.
    """

    source: str
    mode: Mode
    inputs: tuple[str, ...]
    entry: str = ""
    solution_class: bool = False
    line_offset: int = 0
    preload: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode != "script" and not self.entry:
            raise SandboxError(f"a {self.mode!r} job needs the name of its entry function")


@dataclass(frozen=True)
class Outcome:
    """What one test did, before comparison with the expected output.

    Attributes:
        status: ``ok``, ``error``, ``timeout``, ``output_limit``, ``crashed`` (the child
            died), ``load_error`` or ``load_timeout`` (the program did not load).
        output: What the test printed (``ok``).
        value: JSON of the returned value (``ok`` in call mode).
        error: Why it failed.
        seconds: Time in the child, when known.
    """

    status: str
    output: str | None = None
    value: str | None = None
    error: str = ""
    seconds: float | None = None


@dataclass(frozen=True)
class RunReport:
    """The outcomes of one job.

    Attributes:
        outcomes: One per test run, in order; fewer than the inputs when ``stop`` said so.
        isolation: The child's own report of its confinement (see ``confine``).
        pids: Process ids of the children used (more than one after crashes); each was
            its own process group, killed as a whole when its part of the run ended.
        seconds: Wall-clock time of the run.
    """

    outcomes: tuple[Outcome, ...]
    isolation: dict[str, Any] = field(default_factory=dict)
    pids: tuple[int, ...] = ()
    seconds: float = 0.0


Stop = Callable[[int, Outcome], bool]
"""Called after each test with its index and outcome; returning True ends the run."""
