"""One sandbox child process seen from the parent: start it, read its reports, kill it.

The child is a fresh interpreter (``python -I``) that leads its own process group
(``setsid``, so the whole group can be killed at once), with a scrubbed environment, no
stdin or stdout, stderr in a file of the run's private folder, and one pipe for its
JSON-line reports. The job (program and test inputs) is a file in that private folder,
which the sandbox user cannot open (as root) and which the child hides before the program
runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thoughtmdp import isolation
from thoughtmdp.envs.sandbox.cleanup import CleanupTimeout, remove_tree
from thoughtmdp.envs.sandbox.jobs import SandboxError
from thoughtmdp.envs.sandbox.values import bounded_loads

logger = logging.getLogger(__name__)
RUNNER_FOLDER = str(Path(__file__).resolve().parent)
BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);import runner as r;del sys.path[0];"
    "r.main(sys.argv[2],int(sys.argv[3]))"
)
"""The child's ``-c`` program: import the runner from this folder, then forget the folder."""
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
TERM_SECONDS = 1.0
"""How long a child may take to end the program's process once asked (``SIGTERM``)."""
GROUP_EXIT_SECONDS = 5.0
"""How long to wait for the last process of a killed child's group to go."""
CLEANUP_SECONDS = 10.0
"""Time allowed to remove what a run left on disk."""
REPORT_DEPTH, REPORT_DIGITS = 6, 20
"""How deep a report may nest and how long its numbers may be (real ones stay well below)."""


class ChildEnded(Exception):
    """The child closed its report channel: it ended, or the program closed the channel."""


class ChildDeadline(Exception):
    """The child sent nothing before the deadline."""


class ProtocolError(Exception):
    """The child sent something that is not a report (the program tampered with the channel)."""


@contextlib.contextmanager
def workspace(uid: int | None, gid: int | None) -> Iterator[tuple[str, str]]:
    """A private folder for one run and, inside it, the program's working folder.

    The private folder (mode 0700, owned by the caller) holds the job files and stderr;
    the working folder is handed to ``uid`` when the caller is root. Both are removed on
    exit, whatever the program left in them.

    Args:
        uid: The sandbox user, or ``None`` to keep the caller's.
        gid: Its group.

    Yields:
        ``(private folder, working folder)``.
    """
    base = tempfile.mkdtemp(prefix="thoughtmdp-sandbox-")
    try:
        work = os.path.join(base, "work")
        os.mkdir(work, 0o700)
        if uid is not None and os.geteuid() == 0:
            os.chown(work, uid, uid if gid is None else gid)
        yield base, work
    finally:
        try:
            remove_tree(base, CLEANUP_SECONDS)
        except (CleanupTimeout, OSError) as exc:
            logger.warning("sandbox: left %s on disk: %s", base, exc)


class Child:
    """A started sandbox child.

    Args:
        python: The interpreter.
        site_packages: Whether the child sees installed packages (``-S`` when not).
        job: The job data (JSON-serialisable).
        base: The run's private folder.
        work: The working folder.
        tag: Distinguishes the files of successive children of one run.
        max_message: Bytes one report may take before the child is treated as hostile.
    """

    def __init__(
        self,
        python: str,
        site_packages: bool,
        job: dict[str, Any],
        base: str,
        work: str,
        tag: int,
        max_message: int,
    ) -> None:
        job_path = os.path.join(base, f"job-{tag}.json")
        fd = os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8") as file:
            json.dump(job, file)
        self.stderr_path = os.path.join(base, f"stderr-{tag}.txt")
        read_end, write_end = os.pipe()
        flags = ["-I"] if site_packages else ["-I", "-S"]
        command = [python, *flags, "-c", BOOT, RUNNER_FOLDER, job_path, str(write_end)]
        env = {"PATH": CHILD_PATH, "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
        try:
            with open(self.stderr_path, "wb") as stderr:
                self.process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=stderr, cwd=work, env=env, pass_fds=(write_end,),
                    start_new_session=True,
                )  # fmt: skip
        except OSError as exc:
            os.close(read_end)
            raise SandboxError(f"could not start the sandbox child with {python!r}: {exc}") from exc
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.started = time.monotonic()
        self._fd = read_end
        self._buffer = bytearray()
        self._max_message = max_message

    def next_report(self, deadline: float) -> dict[str, Any]:
        """The next report.

        Raises:
            ChildEnded: If the child closed the channel first.
            ChildDeadline: If ``deadline`` (a ``time.monotonic`` value) passes first.
            ProtocolError: If the child sent a line that is not a JSON report, or too much.
        """
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildDeadline
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                raise ChildEnded
            self._buffer += chunk
            if len(self._buffer) > self._max_message:
                raise ProtocolError(f"a report over {self._max_message} bytes")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            report = bounded_loads(line, REPORT_DEPTH, REPORT_DIGITS)
        except (ValueError, MemoryError) as exc:
            raise ProtocolError(f"a report that is not plain JSON ({exc})"[:200]) from None
        if not isinstance(report, dict):
            raise ProtocolError("a report that is not a JSON object")
        return report

    def kill(self) -> str:
        """End the child and every process of its group, reap it and describe how it ended.

        ``SIGTERM`` first: the child then ends the process it runs the program in (the first
        of its PID namespace) and reaps it. ``SIGKILL`` for the whole group after
        :data:`TERM_SECONDS`, or at once for a child that does not wait for anyone.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(TERM_SECONDS)
        deadline = time.monotonic() + GROUP_EXIT_SECONDS
        while True:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            code = self.process.wait()
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        code = self.process.wait()
        os.close(self._fd)
        return describe_exit(code)

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the child wrote to stderr (its own tracebacks, if it failed)."""
        try:
            with open(self.stderr_path, "rb") as file:
                file.seek(max(0, os.path.getsize(self.stderr_path) - limit))
                return file.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""


def describe_exit(code: int | None) -> str:
    """``"exit code 3"`` or ``"killed by signal SIGKILL"`` for a process return code."""
    if code is None:
        return "still running"
    return isolation.describe_exit(code)
