"""Running a function in a long-lived child process under a time limit.

A :class:`TimedWorker` keeps one child process and runs one call at a time in it. A call
that runs past its time limit gets the child killed and raises :class:`VerifierTimeout`; a
child that crashes raises :class:`WorkerCrashed`; either way the next call starts a fresh
child. A child that cannot start raises :class:`WorkerStartError`, a
:class:`~thoughtmdp.errors.VerifierUnavailable`. Exceptions raised by the function come
back as the same exception type when they can be pickled, with the child's traceback
attached as ``__cause__``.

The child is a fresh interpreter (``sys.executable -c`` with a small start-up program,
started by :mod:`subprocess`, so it is safe in programs that use threads or asyncio) that
takes the parent's ``sys.path`` and imports only this module and the target's. It never
imports the caller's main module, so workers work the same from a script with or without
``if __name__ == "__main__":``, a notebook or ``python -c``; in return, the target cannot
be a function defined in the main module.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from thoughtmdp.errors import ThoughtMDPError, VerifierTimeout, VerifierUnavailable

Target = Callable[..., Any] | str
"""A picklable top-level function, or ``"package.module:function"`` to import in the child."""

BOOT = """\
import pickle, sys, traceback
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
try:
    path, *boot = pickle.loads(conn.recv_bytes())
    sys.path[:] = path
    from thoughtmdp.isolation import _serve
except BaseException:
    conn.send_bytes(pickle.dumps(("failed", traceback.format_exc())))
    raise SystemExit(1)
_serve(conn, *boot)
"""
"""The child's ``-c`` program: take the parent's ``sys.path``, then serve calls."""


class WorkerStartError(VerifierUnavailable):
    """The child process could not start, import its function or run its initializer."""


class WorkerCrashed(ThoughtMDPError, RuntimeError):
    """The child process died while running a call."""


class WorkerError(ThoughtMDPError, RuntimeError):
    """The function raised an exception that could not be sent back as itself."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in the child, attached as ``__cause__``."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""' if self.args else ""


class TimedWorker:
    """Run ``target`` in a child process, one call at a time, with a time limit per call.

    The clock of a call starts when the call is handed to an idle child that has finished
    starting (imports and ``initializer`` included), so start-up time never counts.
    Calls from several threads are safe; they take turns. The child is a new interpreter
    that never imports the caller's main module (see the module docstring).

    Args:
        target: A picklable top-level function of an importable module (not the main
            module), or ``"package.module:function"``.
        timeout: Seconds a call may run in the child; ``None`` for no limit.
        initializer: Run once in each new child before it reports ready (same forms).
        initargs: Positional arguments of ``initializer`` (picklable).
        executable: The Python interpreter of the child (default: ``sys.executable``).
        start_timeout: Seconds a child may take to start.
        name: Used in messages (default: the target's name).

    Raises:
        TypeError: If ``target``, ``initializer`` or ``initargs`` cannot be sent to a
            child, for instance a function defined in the main module.

    >>> import operator
    >>> with TimedWorker(operator.add, timeout=10) as worker:
    ...     worker(2, 3)
    5
    """

    def __init__(
        self,
        target: Target,
        timeout: float | None = None,
        *,
        initializer: Target | None = None,
        initargs: Sequence[Any] = (),
        executable: str | os.PathLike[str] | None = None,
        start_timeout: float = 120.0,
        name: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.name = name or _target_name(target)
        self.executable = os.fspath(executable) if executable is not None else sys.executable
        self._boot = _dumps_target(target), _dumps_target(initializer), _dumps_args(initargs)
        self._lock = threading.Lock()
        self._slot: list[_Child] = []
        self._finalizer = weakref.finalize(self, _stop_all, self._slot)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``target(*args, **kwargs)`` in the child and return its result.

        Raises:
            VerifierTimeout: If the call ran past ``timeout`` (the child is killed).
            WorkerCrashed: If the child died during the call.
            WorkerStartError: If a new child could not start (a setup problem: the
                executable, an import or the initializer failed, or start-up was too slow).
            WorkerError: If the function raised an exception that cannot be pickled.
            Exception: The function's own exception, with the child's traceback as cause.
        """
        job = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            child = self._ready_child()
            try:
                reply = self._exchange(child, job)
            except BaseException:
                _stop_all(self._slot, kill=True)
                raise
        try:
            status, value, remote_tb = pickle.loads(reply)
        except Exception as exc:
            raise WorkerError(f"{self.name} sent a reply that fails to unpickle: {exc}") from exc
        if status == "ok":
            return value
        error = value if isinstance(value, BaseException) else WorkerError(str(value))
        raise error from RemoteTraceback(remote_tb)

    def close(self) -> None:
        """Stop the child process; a later call starts a new one."""
        with self._lock:
            _stop_all(self._slot)

    def __enter__(self) -> TimedWorker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The process id of the current child, or ``None`` when none is running."""
        return self._slot[0].process.pid if self._slot else None

    def _ready_child(self) -> _Child:
        if self._slot and self._slot[0].process.poll() is not None:
            _stop_all(self._slot, kill=True)  # died while idle; unrelated to the coming call
        if not self._slot:
            child = _Child(self.executable, self._boot, self.start_timeout, self.name)
            self._slot.append(child)
        return self._slot[0]

    def _exchange(self, child: _Child, job: bytes) -> bytes:
        try:
            child.conn.send_bytes(job)
            if child.conn.poll(self.timeout):
                return child.conn.recv_bytes()
        except (EOFError, OSError):
            raise WorkerCrashed(
                f"the worker process of {self.name} died during a call "
                f"({describe_exit(child.stop(kill=True))}); the next call starts a fresh one"
            ) from None
        raise VerifierTimeout(
            f"{self.name} ran past its time limit of {self.timeout:g} s; its worker "
            "process was killed and the next call starts a fresh one"
        )


class WorkerPool:
    """A fixed number of :class:`TimedWorker` s, so several threads can run calls at once.

    Workers start on first use. Arguments are those of :class:`TimedWorker`.

    Args:
        target: A picklable top-level function, or ``"package.module:function"``.
        size: The number of child processes.
        timeout: Seconds a call may run in its child; ``None`` for no limit.
        **options: Further :class:`TimedWorker` options.

    Raises:
        ValueError: If ``size`` is below 1.
    """

    def __init__(
        self, target: Target, size: int = 1, timeout: float | None = None, **options: Any
    ) -> None:
        if size < 1:
            raise ValueError(f"a WorkerPool needs at least 1 worker, got size={size}")
        self.workers = [TimedWorker(target, timeout, **options) for _ in range(size)]
        self._idle: queue.SimpleQueue[TimedWorker] = queue.SimpleQueue()
        for worker in self.workers:
            self._idle.put(worker)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the call on the next idle worker; see :meth:`TimedWorker.__call__`."""
        worker = self._idle.get()
        try:
            return worker(*args, **kwargs)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every child process; later calls start new ones."""
        for worker in self.workers:
            worker.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Child:
    """One started child process and the parent's end of its socket pair."""

    def __init__(
        self, executable: str, boot: tuple[bytes, bytes, bytes], wait: float, name: str
    ) -> None:
        self.conn: Connection
        self.conn, child_conn = multiprocessing.Pipe()
        fd = child_conn.fileno()
        command = [executable, *_interpreter_flags(), "-c", BOOT, str(fd)]
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, pass_fds=(fd,))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.conn.close()
            raise WorkerStartError(
                f"could not start the worker process of {name} with {executable!r}: {exc}"
            ) from exc
        finally:
            child_conn.close()  # so the parent sees EOF when the child dies
        try:
            self.conn.send_bytes(pickle.dumps((sys.path, *boot), protocol=pickle.HIGHEST_PROTOCOL))
            ready = self.conn.poll(wait)
            message = pickle.loads(self.conn.recv_bytes()) if ready else ("slow", "")
        except (EOFError, OSError):
            message = ("died", "")
        except BaseException:
            self.stop(kill=True)
            raise
        if message[0] != "ready":
            code = self.stop(kill=True)
            raise WorkerStartError(_start_failure(name, executable, message, code, wait))

    def stop(self, kill: bool = False) -> int | None:
        """End the process (politely unless ``kill``) and return its exit code; idempotent."""
        if self.conn.closed:
            return self.process.returncode
        if not kill and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.conn.send_bytes(b"")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.conn.close()
        return self.process.returncode


def _interpreter_flags() -> list[str]:
    """The parent's interpreter options (``-I``, ``-X dev``, ``-W`` ...) for the child."""
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)  # what spawn uses
    return list(flags()) if flags is not None else []


def _stop_all(slot: list[_Child], kill: bool = False) -> None:
    while slot:
        slot.pop().stop(kill)


def _serve(conn: Connection, target: bytes, initializer: bytes, initargs: bytes) -> None:
    """The child's main loop: start up, report ready, then answer calls until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        function = _load_target(target)
        if initializer:
            _load_target(initializer)(*pickle.loads(initargs))
    except BaseException:
        conn.send_bytes(pickle.dumps(("failed", traceback.format_exc())))
        return
    conn.send_bytes(pickle.dumps(("ready", "")))
    while True:
        try:
            job = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not job:
            return
        try:
            conn.send_bytes(_run(function, job))
        except OSError:  # the parent has gone
            return


def _run(function: Callable[..., Any], job: bytes) -> bytes:
    try:
        args, kwargs = pickle.loads(job)
        return pickle.dumps(("ok", function(*args, **kwargs), ""), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:
        remote_tb = traceback.format_exc()
        if isinstance(exc, Exception):
            try:
                reply = pickle.dumps(("error", exc, remote_tb))
                pickle.loads(reply)  # some exceptions pickle but cannot be rebuilt
                return reply
            except Exception:
                pass
        return pickle.dumps(("error", f"{type(exc).__qualname__}: {exc}", remote_tb))


def _dumps_target(target: Target | None) -> bytes:
    if target is None:
        return b""
    if isinstance(target, str):
        if ":" not in target:
            raise TypeError(
                f"a target string must look like 'package.module:function', got {target!r}"
            )
        module = target.partition(":")[0]
    else:
        module = getattr(target, "__module__", None) or ""
    if module in ("__main__", "__mp_main__"):
        raise TypeError(
            f"{_target_name(target)} is defined in the main module, which worker processes "
            "do not import; move it into an importable module and pass it, or its "
            "'package.module:function' string"
        )
    try:
        return pickle.dumps(target)
    except Exception as exc:
        raise TypeError(
            f"{_target_name(target)} cannot be sent to a worker process ({exc}); pass a "
            "top-level function of an importable module, or a 'package.module:function' string"
        ) from None


def _dumps_args(args: Sequence[Any]) -> bytes:
    try:
        return pickle.dumps(tuple(args), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(f"initargs cannot be sent to a worker process: {exc}") from None


def _load_target(blob: bytes) -> Callable[..., Any]:
    target = pickle.loads(blob)
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        loaded: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return loaded
    return target  # type: ignore[no-any-return]


def _target_name(target: Target | None) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def describe_exit(code: int | None) -> str:
    """``"exit code 3"`` or ``"killed by signal SIGKILL"`` for a process return code."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _start_failure(
    name: str, executable: str, message: tuple[str, str], code: int | None, wait: float
) -> str:
    kind, detail = message
    if kind == "failed":
        return f"the worker process of {name} failed to start:\n{detail}"
    if kind == "slow":
        return f"the worker process of {name} did not start within {wait:g} s"
    return (
        f"the worker process of {name} ({executable}) exited before it was ready "
        f"({describe_exit(code)}); see its output on stderr"
    )
