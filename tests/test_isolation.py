"""Tests of thoughtmdp.isolation: time limits, crashes, remote exceptions, threads.

The targets are stdlib functions, since the child (a fresh interpreter that never imports
the main module) must import its target by name.
"""

from __future__ import annotations

import ctypes
import gc
import operator
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from thoughtmdp.errors import ThoughtMDPError, VerifierTimeout
from thoughtmdp.isolation import (
    RemoteTraceback,
    TimedWorker,
    WorkerCrashed,
    WorkerPool,
    WorkerStartError,
)


@pytest.fixture(scope="module")
def adder() -> Iterator[TimedWorker]:
    with TimedWorker(operator.add, timeout=10) as worker:
        yield worker


def test_runs_calls_in_one_long_lived_child(adder: TimedWorker) -> None:
    assert adder(2, 3) == 5
    pid = adder.pid
    assert pid is not None and pid != os.getpid()
    assert adder("a", "b") == "ab"
    assert adder.pid == pid


def test_string_target() -> None:
    with TimedWorker("operator:mul", timeout=10) as worker:
        assert worker(6, 7) == 42


def test_remote_exception_keeps_its_type_and_traceback() -> None:
    with TimedWorker(operator.truediv, timeout=10) as worker:
        with pytest.raises(ZeroDivisionError, match="division by zero") as caught:
            worker(1, 0)
        assert isinstance(caught.value.__cause__, RemoteTraceback)
        assert "ZeroDivisionError" in str(caught.value.__cause__)
        assert worker(1, 4) == 0.25


def test_timeout_kills_the_child_and_the_next_call_recovers() -> None:
    with TimedWorker(time.sleep, timeout=0.5) as worker:
        worker(0)
        first = worker.pid
        process = worker._slot[0].process
        with pytest.raises(VerifierTimeout, match=r"time limit of 0\.5 s"):
            worker(30)
        # killed at the limit, not waited for: the 30 s sleep never ended on its own
        assert process.poll() == -signal.SIGKILL
        assert worker.pid is None
        assert worker(0.01) is None
        assert worker.pid not in (None, first)


def test_start_up_time_does_not_count_toward_the_limit() -> None:
    worker = TimedWorker(operator.add, timeout=0.3, initializer=time.sleep, initargs=(1.0,))
    with worker:
        assert worker(1, 1) == 2


def test_crash_raises_and_recovers() -> None:
    with TimedWorker(os._exit, timeout=10) as worker:
        with pytest.raises(WorkerCrashed, match=r"exit code 3"):
            worker(3)
        with pytest.raises(WorkerCrashed):
            worker(4)
    assert issubclass(WorkerCrashed, ThoughtMDPError)


def test_segfault_is_reported_by_signal_name() -> None:
    with TimedWorker(ctypes.string_at, timeout=10) as worker:
        with pytest.raises(WorkerCrashed, match="SIGSEGV"):
            worker(0)
        assert worker(b"abc", 2) == b"ab"


def test_target_that_cannot_be_imported() -> None:
    worker = TimedWorker("no_such_module_anywhere:f", timeout=10)
    with pytest.raises(WorkerStartError, match="No module named 'no_such_module_anywhere'"):
        worker()


def test_targets_that_cannot_be_sent() -> None:
    with pytest.raises(TypeError, match="cannot be sent to a worker process"):
        TimedWorker(lambda: 1)
    with pytest.raises(TypeError, match=r"package\.module:function"):
        TimedWorker("operator.add")
    with pytest.raises(TypeError, match="defined in the main module"):
        TimedWorker("__main__:f")
    with pytest.raises(TypeError, match="initargs cannot be sent"):
        TimedWorker(operator.add, initializer=time.sleep, initargs=(lambda: 1,))


def test_threads_take_turns(adder: TimedWorker) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: adder(i, 1000), range(64)))
    assert results == [i + 1000 for i in range(64)]


def test_close_stops_the_child_and_a_later_call_restarts_it() -> None:
    worker = TimedWorker(operator.neg, timeout=10)
    assert worker(1) == -1
    worker.close()
    assert worker.pid is None
    assert worker(2) == -2
    worker.close()


def test_garbage_collected_worker_stops_its_child() -> None:
    worker = TimedWorker(operator.neg, timeout=10)
    worker(1)
    process = worker._slot[0].process
    del worker
    gc.collect()
    assert process.poll() is not None


def test_pool_runs_calls_in_parallel(tmp_path: Path) -> None:
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with WorkerPool(os.open, size=2, timeout=10) as pool:
        # Opening either end of a FIFO blocks until the other end is opened: run one after
        # the other, the first call would run into its time limit.
        with ThreadPoolExecutor(2) as threads:
            reader = threads.submit(pool, fifo, os.O_RDONLY)
            writer = threads.submit(pool, fifo, os.O_WRONLY)
            assert isinstance(reader.result(), int) and isinstance(writer.result(), int)
        assert len({w.pid for w in pool.workers} - {None}) == 2
    with pytest.raises(ValueError, match="at least 1 worker"):
        WorkerPool(time.sleep, size=0)
