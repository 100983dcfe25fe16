"""Inside the sandbox child: the program's stdin and captured stdout, and the test timer.

- stdin is file descriptor 0, pointed at a fresh in-memory file for every test, behind one
  ``sys.stdin`` object that is rewound (so ``input()``, ``sys.stdin.buffer``, ``open(0)``
  and a ``from sys import stdin`` made at import time all see the current test's input);
- stdout is one ``sys.stdout`` object over a capped buffer, emptied before every test;
  closing it does nothing (as under ``lcb_runner``), printing past the cap raises
  :class:`OutputLimit`;
- :class:`Alarm` raises :class:`TimeLimit` in the program when a test runs too long, and
  again every 50 ms until the program lets it through.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

REPEAT_ALARM = 0.05


class TimeLimit(BaseException):
    """Raised in the program when its test runs past the time limit (re-raised until out)."""


class OutputLimit(BaseException):
    """Raised in the program when it prints more than the output limit."""


class Sink(io.RawIOBase):
    """The bytes behind ``sys.stdout``, with a cap; closing it does nothing."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.over = False
        self.discard = False

    def writable(self) -> bool:
        """Always: this is an output."""
        return True

    def write(self, chunk: Any) -> int:
        """Keep ``chunk``, or raise :class:`OutputLimit` past the cap (and ever after)."""
        size = len(memoryview(chunk))
        if self.discard:
            return size
        if self.over or len(self.data) + size > self.limit:
            self.over = True
            raise OutputLimit(f"printed more than {self.limit} bytes")
        self.data += chunk
        return size

    def close(self) -> None:
        """Do nothing: a program that closes stdout keeps a working one."""
        return None


class _Buffer(io.BufferedWriter):
    def close(self) -> None:
        self.flush()  # as lcb_runner does, closing stdout is a no-op


class _Text(io.TextIOWrapper):
    def close(self) -> None:
        self.flush()


class Streams:
    """The program's stdin (fd 0, a fresh file per test) and its captured stdout."""

    def __init__(self, output_limit: int) -> None:
        self.sink = Sink(output_limit)
        self.stdout = self._new_stdout()
        self.stdin = self._new_stdin()

    def _new_stdout(self) -> io.TextIOWrapper:
        return _Text(_Buffer(self.sink), encoding="utf-8", errors="backslashreplace")

    def _new_stdin(self) -> io.TextIOWrapper:
        raw = io.FileIO(0, "r", closefd=False)
        return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8")

    def start(self, input_fd: int | None) -> None:
        """Point stdin at ``input_fd`` (when given) and empty stdout, for the next test."""
        if input_fd is not None:
            os.dup2(input_fd, 0)
            os.lseek(0, 0, os.SEEK_SET)
            if self.stdin.closed:
                self.stdin = self._new_stdin()
            else:
                self.stdin.seek(0)  # drops what the previous test left buffered
        self.sink.discard = True
        try:
            self.stdout.flush()
        except (ValueError, OSError):
            self.stdout = self._new_stdout()  # the program detached it
        self.sink.discard, self.sink.over = False, False
        self.sink.data.clear()
        sys.stdin, sys.stdout = self.stdin, self.stdout

    def output(self) -> str:
        """Everything the current test printed so far."""
        self.stdout.flush()
        return self.sink.data.decode("utf-8", "replace")


class Alarm:
    """Raise :class:`TimeLimit` in the main thread ``seconds`` from now, and every 50 ms after."""

    def __init__(self) -> None:
        self.armed = False
        signal.signal(signal.SIGALRM, self._fire)

    def _fire(self, signum: int, frame: Any) -> None:
        if self.armed:  # a signal that arrives just after disarm() is dropped
            raise TimeLimit("time limit exceeded")

    def arm(self, seconds: float) -> None:
        """Go off ``seconds`` from now, then every 50 ms."""
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_ALARM)

    def disarm(self) -> None:
        """Stop; a signal already on its way is ignored."""
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
