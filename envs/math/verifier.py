r"""Checking a final answer against a gold answer with math-verify, inside a worker process.

:func:`check` runs in a :class:`thoughtmdp.isolation.TimedWorker` child, on that process's
main thread, where a ``SIGALRM`` deadline can interrupt slow sympy work. math-verify's own
alarms are switched off here because two alarms on one process would cancel each other.
Both answers are parsed as the content of a ``\boxed{}``: math-verify's default extraction
misreads some bare expressions (``x^2+1`` yields nothing, ``2\sqrt{2}`` yields ``2``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from math_verify import parse, verify

CORRECT = None
WRONG = "wrong answer"
TIMEOUT = "timeout"
UNPARSABLE_ANSWER = "could not parse the answer"
UNPARSABLE_GOLD = "could not parse the gold answer"


class _DeadlinePassed(BaseException):
    """Raised by the alarm; a BaseException so math-verify's ``except Exception`` passes it on."""


def prepare() -> None:
    """Quiet math-verify's log and warm sympy up; run once in each new worker process."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    check("1", "1", None)


def check(answer: str, gold: str, time_limit: float | None) -> tuple[bool, str | None]:
    r"""Whether ``answer`` and ``gold`` are mathematically equivalent.

    Args:
        answer: The predicted answer, without ``\boxed{}``.
        gold: The gold answer, without ``\boxed{}`` or ``$`` delimiters.
        time_limit: Seconds for parsing and comparing together (only enforced on the main
            thread); ``None`` for no limit.

    Returns:
        ``(correct, reason)``: ``reason`` is ``None`` when correct, otherwise one of
        :data:`WRONG`, :data:`TIMEOUT`, :data:`UNPARSABLE_ANSWER`, :data:`UNPARSABLE_GOLD`.
    """
    try:
        with _deadline(time_limit):
            gold_parsed = _parse(gold)
            if not gold_parsed:
                return False, UNPARSABLE_GOLD
            answer_parsed = _parse(answer)
            if not answer_parsed:
                return False, UNPARSABLE_ANSWER
            correct = verify(gold_parsed, answer_parsed, timeout_seconds=None)
    except _DeadlinePassed:
        return False, TIMEOUT
    return (True, CORRECT) if correct else (False, WRONG)


def _parse(text: str) -> list[Any]:
    for candidate in (f"\\boxed{{{text}}}", f"${text}$", text):
        parsed: list[Any] = parse(candidate, parsing_timeout=None)
        if parsed:
            return parsed
    return []


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _DeadlinePassed

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
