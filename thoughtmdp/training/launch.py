"""Starting and supervising a run's learner and actor processes on this machine.

Each process is the same command a user would start by hand (``thoughtmdp learner --config
...``, ``thoughtmdp actor --config ...``), in its own session so that its whole process tree
(vLLM's engine processes included) can be stopped together, with its output in
``run_dir/logs``, on its own cores (CPU affinity, set between fork and exec, and as many
OpenMP threads) and GPUs (``CUDA_VISIBLE_DEVICES``) as :mod:`thoughtmdp.training.placement`
chose. A learner of several ranks (``learner.num_processes``) runs under the
DeepSpeed launcher, which starts every rank on this host (the ranks share the learner's
cores; each takes one of its GPUs); it is stopped by signalling its
whole process group, so each rank stops between steps and takes part in the checkpoint. The
run ends when the learner exits: after ``learner.max_steps``, or after
the step running when the time budget ran out (it is sent SIGTERM and stops between steps).
An actor or learner that dies before that ends the run with :class:`ProcessFailed`.

Children never outlive the launcher (:mod:`thoughtmdp.training.lifeline`). Stopping sends
the learner the signal first and gives it ``STOP_GRACE_S`` to checkpoint; the actors, which
hold nothing worth saving, get ``ACTOR_GRACE_S``. Whatever is left is killed with its process
group, and the shared-memory files (``/dev/shm``) the group had open are removed.
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
from thoughtmdp.settings.placement import format_list
from thoughtmdp.training.lifeline import PARENT_ENV, die_with_parent
from thoughtmdp.training.placement import GPU_ENV, Placement, Slot
from thoughtmdp.training.shared_memory import remove_files, shared_memory_files

POLL_S = 0.5
STOP_GRACE_S = 30.0
ACTOR_GRACE_S = 5.0
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
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
    group_stop: bool = False
    """Stop signals go to the whole group (a launcher that does not pass them on)."""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process's whole session (its children included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def ask_to_stop(self, signum: int) -> None:
        """Send ``signum`` to the process, or to its group when ``group_stop``."""
        if self.group_stop:
            self.signal_group(signum)
        elif self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def group_alive(self) -> bool:
        """Whether any process of the child's group is left."""
        try:
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def end(self, signum: int, grace_s: float) -> None:
        """Send ``signum``, wait up to ``grace_s``, then kill the group and remove its shm files."""
        files = shared_memory_files(self.process.pid)
        deadline = time.monotonic() + grace_s
        if self.process.poll() is None or (self.group_stop and self.group_alive()):
            self.ask_to_stop(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
            while self.group_stop and self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)  # the ranks finish their step and checkpoint
        files |= shared_memory_files(self.process.pid)
        self.signal_group(signal.SIGKILL)  # stragglers, e.g. an engine's workers
        self.process.wait()
        remove_files(files)
        if self._file is not None:
            self._file.close()
            self._file = None


def child_environment(threads: int, slot: Slot | None = None) -> dict[str, str]:
    """The environment of a learner or actor: threads, GPUs, and vLLM CPU's thread binding.

    vLLM's CPU backend pins its OpenMP threads (``VLLM_CPU_OMP_THREADS_BIND=auto``) to the
    same cores in every engine, so two actors (or two runs) would share one core. Unless the
    variable is set, they are bound to the process's own cores, or not at all (``nobind``)
    when it has none of its own.
    """
    cpus = None if slot is None else slot.cpus
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
        CPU_BIND_ENV: os.environ.get(CPU_BIND_ENV, "nobind" if cpus is None else format_list(cpus)),
        PARENT_ENV: str(os.getpid()),
    }
    if slot is not None and slot.gpus is not None:
        env[GPU_ENV] = ",".join(slot.gpus)
    return env


def start(
    slot: Slot, command: list[str], log: Path, threads: int, module: str = "thoughtmdp.cli"
) -> Child:
    """Start ``python -m module <command...>`` in a new session, logging to ``log``.

    The child runs on ``slot``'s cores and GPUs, and gets SIGTERM if this process dies
    (:mod:`thoughtmdp.training.lifeline`).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 (closed when the run ends)
    parent = os.getpid()
    process = subprocess.Popen(
        [sys.executable, "-m", module, *command],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=child_environment(threads, slot),
        start_new_session=True,
        preexec_fn=lambda: _in_child(parent, slot.cpus),
    )
    return Child(slot.name, process, log, out)


def _in_child(parent: int, cpus: list[int] | None) -> None:
    """Between fork and exec: die with the parent, run on the given cores."""
    die_with_parent(parent)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


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

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the learner (it checkpoints), then the actors; nothing of theirs is left.

        Args:
            signum: The signal sent first (the one ``thoughtmdp train`` received, if any).
        """
        self.learner.end(signum, STOP_GRACE_S)
        for actor in self.actors:
            actor.ask_to_stop(signum)
        for actor in self.actors:
            actor.end(signum, ACTOR_GRACE_S)


def launch(
    run_dir: Path,
    learner_config: Path,
    actor_configs: list[Path],
    placement: Placement,
    threads: int | None = None,
) -> Processes:
    """Start the learner and the actors of a run (configs already written).

    Args:
        run_dir: The run folder (logs go to ``run_dir/logs``).
        learner_config: The learner's config file.
        actor_configs: One config file per actor, in the order of ``placement.actors``.
        placement: Each process's cores and GPUs; the learner's ``ranks`` more than 1
            starts it under the DeepSpeed launcher.
        threads: Threads of each process (of each rank of the learner); ``None``: as
            many as its cores (the CPU count shared out when it is not pinned).
    """
    logs = run_dir / "logs"
    shared = max(1, (os.cpu_count() or 1) // (placement.learner.ranks + len(actor_configs)))

    def threads_of(slot: Slot) -> int:
        return threads or slot.threads or shared

    learner = start_learner(
        placement.learner, learner_config, logs / "learner.log", threads_of(placement.learner)
    )
    actors = [
        start(slot, ["actor", "--config", str(path)], logs / f"{path.stem}.log", threads_of(slot))
        for slot, path in zip(placement.actors, actor_configs, strict=True)
    ]
    return Processes(learner, actors)


def deepspeed_command(processes: int, command: list[str], gpus_placed: bool = False) -> list[str]:
    """Arguments of ``python -m deepspeed.launcher.runner`` running ``thoughtmdp <command>``.

    With ``gpus_placed`` the launcher takes the ranks' GPUs from ``CUDA_VISIBLE_DEVICES``
    (it turns them into ``--include``), so ``--num_gpus`` is left out.

    >>> deepspeed_command(2, ["learner"])[:3]
    ['--num_gpus', '2', '--no_local_rank']
    """
    port = free_loopback_address().rsplit(":", 1)[1]
    count = [] if gpus_placed else ["--num_gpus", str(processes)]
    options = [*count, "--no_local_rank", "--master_port", port]
    return [*options, "--module", "thoughtmdp.cli", *command]


def start_learner(slot: Slot, config: Path, log: Path, threads: int) -> Child:
    """Start the learner: one process, or ``slot.ranks`` ranks under the DeepSpeed launcher.

    The ranks share the learner's cores; each rank takes one of its GPUs.
    """
    command = ["learner", "--config", str(config)]
    if slot.ranks == 1:
        return start(slot, command, log, threads)
    runner = "deepspeed.launcher.runner"
    arguments = deepspeed_command(slot.ranks, command, gpus_placed=bool(slot.gpus))
    child = start(slot, arguments, log, threads, runner)
    child.group_stop = True
    return child


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
            # SIGTERM before its handler was installed (still starting): a stop, not a failure
            if code != 0 and not (stopped_by_time and code == -signal.SIGTERM):
                raise _failure(processes.learner, code)
            return stopped_by_time
        for actor in processes.actors:
            code = actor.process.poll()
            if code is not None:
                raise _failure(actor, code)
        if deadline is not None and time.monotonic() >= deadline:
            if stopped_by_time and time.monotonic() >= deadline + STOP_GRACE_S:
                return True  # a step that long would overrun the budget: stop() ends it
            if not stopped_by_time:
                processes.learner.ask_to_stop(signal.SIGTERM)
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
