"""Starting and supervising a run's learner and actor processes on this machine.

Each process is the same command a user would start by hand (``thoughtmdp learner --config
...``, ``thoughtmdp actor --config ...``), in its own session so that its whole process tree
(vLLM's engine processes included) can be stopped together, with its output in
``run_dir/logs``. The run ends when the learner exits: after ``learner.max_steps``, or after
the step running when the time budget ran out (it is sent SIGTERM and stops between steps).
An actor or learner that dies before that ends the run with :class:`ProcessFailed`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.convert import to_yaml

POLL_S = 0.5
STOP_GRACE_S = 30.0
LOG_TAIL_LINES = 30


class ProcessFailed(ThoughtMDPError):
    """A learner or actor process exited before the run was over."""


def free_loopback_address() -> str:
    """A ``tcp://127.0.0.1:PORT`` address whose port was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def write_yaml(path: Path, config: Any) -> Path:
    """Write a config dataclass to ``path`` as YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config))
    return path


@dataclass
class Child:
    """One started process.

    Attributes:
        name: ``learner`` or the actor's name.
        process: The process.
        log: Its log file (stdout and stderr).
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    _file: IO[bytes] | None = field(default=None, repr=False)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process's whole session (its children included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def start(name: str, command: list[str], log: Path, threads: int) -> Child:
    """Start ``thoughtmdp <command...>`` in a new session, logging to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    out = open(log, "ab")  # noqa: SIM115 (closed when the run ends)
    process = subprocess.Popen(
        [sys.executable, "-m", "thoughtmdp.cli", *command],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return Child(name, process, log, out)


@dataclass
class Processes:
    """A run's learner and actors.

    Attributes:
        learner: The learner process.
        actors: The actor processes.
    """

    learner: Child
    actors: list[Child]

    @property
    def all(self) -> list[Child]:
        """The learner, then the actors."""
        return [self.learner, *self.actors]

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL whatever is left after a grace period."""
        for child in self.all:
            if child.process.poll() is None:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.all:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            child.signal_group(signal.SIGKILL)  # stragglers, e.g. an engine's workers
            child.process.wait()
            if child._file is not None:
                child._file.close()


def launch(
    run_dir: Path, learner_config: Path, actor_configs: list[Path], threads: int
) -> Processes:
    """Start the learner and the actors of a run (configs already written)."""
    logs = run_dir / "logs"
    learner = start(
        "learner", ["learner", "--config", str(learner_config)], logs / "learner.log", threads
    )
    actors = [
        start(path.stem, ["actor", "--config", str(path)], logs / f"{path.stem}.log", threads)
        for path in actor_configs
    ]
    return Processes(learner, actors)


def supervise(
    processes: Processes,
    deadline: float | None,
    on_poll: Callable[[], None] = lambda: None,
) -> bool:
    """Wait for the learner to finish; returns whether the time budget stopped it.

    Args:
        processes: The run's processes.
        deadline: ``time.monotonic()`` value at which the learner is asked to stop.
        on_poll: Called every ``POLL_S`` (e.g. to refresh the progress display).

    Raises:
        ProcessFailed: If the learner exits with an error or an actor exits first; the
            message holds the end of its log.
    """
    stopped_by_time = False
    for _ in _ticks():
        on_poll()
        code = processes.learner.process.poll()
        if code is not None:
            if code != 0:
                raise _failure(processes.learner, code)
            return stopped_by_time
        for actor in processes.actors:
            code = actor.process.poll()
            if code is not None:
                raise _failure(actor, code)
        if deadline is not None and not stopped_by_time and time.monotonic() >= deadline:
            processes.learner.process.send_signal(signal.SIGTERM)
            stopped_by_time = True
    raise AssertionError("unreachable")


def _ticks() -> Iterator[None]:
    while True:
        yield
        time.sleep(POLL_S)


def _failure(child: Child, code: int) -> ProcessFailed:
    return ProcessFailed(
        f"{child.name} exited with status {code}; the end of {child.log}:\n{child.tail()}"
    )
