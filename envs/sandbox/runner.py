"""The program the sandbox child runs: confine itself, load the program, run every test.

Started by :mod:`thoughtmdp.envs.sandbox.sandbox` as ``python -I -c <boot> <folder> <job> <fd>``,
it imports only the standard library and its sibling files. It reads the job file (the
program source, the test inputs and the limits), confines itself
(:mod:`confine`), then reports JSON lines on file descriptor ``fd``:

``{"event": "ready", "isolation": {...}}`` (or ``{"event": "refused", "error": ...}`` when
the isolation required is not achieved here), then ``{"event": "loaded"}`` or
``{"event": "load_failed", "status": ..., "error": ...}``, then one
``{"event": "test", "index": i, "status": ..., "output"/"value"/"error": ...}`` per test
and ``{"event": "done"}``. Status is ``ok``, ``error``, ``timeout`` or ``output_limit``.

Expected outputs never reach the child: the parent compares, so a program that tampers
with this process gains nothing. Each test runs under its own timer; a test that leaves a
thread running, or that takes the process down, ends the child, and the parent starts a
fresh one for the remaining tests.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

try:
    from . import confine, values
    from .streams import Alarm, OutputLimit, Streams, TimeLimit
except ImportError:  # the sandbox child imports this file as a top-level module
    import confine  # type: ignore[import-not-found, no-redef]
    import values  # type: ignore[import-not-found, no-redef]
    from streams import (  # type: ignore[import-not-found, no-redef]
        Alarm,
        OutputLimit,
        Streams,
        TimeLimit,
    )

EXTRA_PRELOAD = (
    "threading", "decimal", "fractions", "array", "cmath", "numbers", "dataclasses", "enum",
    "queue", "time", "os", "textwrap", "unicodedata", "types", "struct", "calendar", "abc",
    "contextlib", "weakref", "pprint", "traceback", "gc", "_strptime", "hashlib", "base64",
    "zlib", "collections.abc", "locale", "difflib", "fnmatch", "uuid", "secrets", "ast",
)  # fmt: skip
"""Standard modules imported before the user switch when the sandbox user cannot read them."""


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        os._exit(71)  # the program closed the report channel; the parent sees EOF


def _input_files(inputs: list[str]) -> list[int]:
    """One in-memory file per test input, made before the file-size limit applies."""
    fds = []
    for text in inputs:
        fd = (
            os.memfd_create("stdin", 0)
            if hasattr(os, "memfd_create")
            else os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600)
        )
        data = text.encode("utf-8", "surrogatepass")
        while data:
            data = data[os.write(fd, data) :]
        fds.append(fd)
    return fds


def _hidden_paths(limits: dict[str, Any]) -> list[str]:
    """Folders on ``sys.path`` the sandbox user will not be able to read."""
    if os.geteuid() != 0 or limits.get("uid") is None:
        return []
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    return [p for p in paths if not confine.world_readable(p)]


def _preload(names: list[str], hidden: list[str]) -> str:
    for name in (*names, *(EXTRA_PRELOAD if hidden else ())):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if hidden:
        return f"unreachable for the sandbox user: {hidden}; common modules imported beforehand"
    return "readable by the sandbox user"


class _Program:
    """The loaded program and how to run one test of it."""

    def __init__(self, job: dict[str, Any], streams: Streams, alarm: Alarm) -> None:
        self.job, self.streams, self.alarm = job, streams, alarm
        self.mode: str = job["mode"]
        self.timeout = float(job["test_timeout"])
        self.code: types.CodeType | None = None
        self.entry: Callable[..., Any] | None = None

    def load(self) -> dict[str, Any]:
        """Compile and execute the module; returns the ``loaded``/``load_failed`` message."""
        try:
            self.code = compile(self.job["source"], "<solution>", "exec")
        except (SyntaxError, ValueError) as exc:
            if isinstance(exc, SyntaxError) and exc.lineno is not None:
                exc.lineno = max(1, exc.lineno - int(self.job.get("line_offset", 0)))
            return {"event": "load_failed", "status": "error", "error": _describe(exc)}
        if self.mode == "script":
            return {"event": "loaded"}
        self.streams.start(None)
        module = types.ModuleType("tmp_sol")
        try:
            self.alarm.arm(self.timeout)
            exec(self.code, module.__dict__)
            target: Any = module.Solution() if self.job["solution_class"] else module
            self.alarm.disarm()
            self.entry = getattr(target, self.job["entry"])
        except TimeLimit:
            return {"event": "load_failed", "status": "timeout", "error": "loading timed out"}
        except BaseException as exc:
            self.alarm.disarm()
            return {"event": "load_failed", "status": "error", "error": _describe(exc)}
        finally:
            self.alarm.disarm()
        return {"event": "loaded"}

    def run(self, index: int, test_input: str, input_fd: int | None) -> dict[str, Any]:
        """Run one test; returns its message (``poisoned`` when a thread outlived it)."""
        self.streams.start(input_fd)
        before = set(threading.enumerate())
        result: dict[str, Any] = {"event": "test", "index": index, "status": "ok"}
        start = time.perf_counter()
        try:
            self.alarm.arm(self.timeout)
            self._run_timed(test_input, before=before, start=start, result=result)
        except TimeLimit:
            result.update(status="timeout", error="time limit exceeded")
        except OutputLimit as exc:
            result.update(status="output_limit", error=str(exc))
        except BaseException as exc:
            result.update(status="error", error=_describe(exc))
        finally:
            self.alarm.disarm()
            sys.stdin, sys.stdout = self.streams.stdin, self.streams.stdout
        result["seconds"] = round(time.perf_counter() - start, 6)
        result["poisoned"] = any(t.is_alive() for t in set(threading.enumerate()) - before)
        return result

    def _run_timed(
        self, test_input: str, before: set[threading.Thread], start: float, result: dict[str, Any]
    ) -> None:
        try:
            value = self._call(test_input)
        except SystemExit:
            if self.mode == "call":
                raise  # lcb_runner lets it escape a call-based test: a runtime error
            value = None
        if self.mode == "call":
            result["value"] = json.dumps(values.encode_value(value))
        self._join_threads(before, start)
        result["output"] = self.streams.output()

    def _call(self, test_input: str) -> Any:
        if self.mode == "call":
            assert self.entry is not None
            args = [json.loads(line) for line in test_input.split("\n")]
            return self.entry(*args)
        if self.mode == "function":
            assert self.entry is not None
            return self.entry()
        assert self.code is not None
        exec(self.code, {"__name__": "__main__", "__builtins__": builtins})
        return None

    def _join_threads(self, before: set[threading.Thread], start: float) -> None:
        for thread in set(threading.enumerate()) - before:
            if not thread.daemon:
                thread.join(max(0.0, self.timeout - (time.perf_counter() - start)))


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:500] + " ..."


def main(job_path: str, report_fd: int) -> None:
    """Run the job in ``job_path`` and report on ``report_fd``; ends the process."""
    with open(job_path, encoding="utf-8") as file:
        job = json.load(file)
    inputs: list[str] = job["inputs"]
    fds = _input_files(inputs) if job["mode"] != "call" else [None] * len(inputs)
    sys.set_int_max_str_digits(50_000)  # lcb_runner's setting
    isolation = confine.isolate(job["limits"])
    minimal = isolation["view"].startswith("minimal")
    isolation["stdlib"] = _preload(job["preload"], [] if minimal else _hidden_paths(job["limits"]))
    confine.restrict(job["limits"], isolation)
    missing = confine.shortfall(isolation)
    if missing and job["limits"].get("isolation") != "weak":
        _send(report_fd, {"event": "refused", "isolation": isolation, "error": missing})
        os._exit(0)
    streams, alarm = Streams(int(job["output_limit"])), Alarm()
    _send(report_fd, {"event": "ready", "isolation": isolation, "pid": os.getpid()})
    program = _Program(job, streams, alarm)
    loaded = program.load()
    _send(report_fd, loaded)
    if loaded["event"] == "loaded":
        for index, (text, fd) in enumerate(zip(inputs, fds, strict=True)):
            try:
                message = program.run(index, text, fd)
            except TimeLimit:  # the alarm went off inside the bookkeeping after the test
                alarm.disarm()
                message = {"event": "test", "index": index, "status": "timeout",
                           "error": "time limit exceeded", "poisoned": True}  # fmt: skip
            _send(report_fd, message)
            if message["poisoned"]:
                os._exit(0)
        _send(report_fd, {"event": "done"})
    os._exit(0)  # no interpreter teardown: leftover threads and atexit hooks are the program's
