"""Grading semantics of LiveCodeBench: verdicts, output comparison, pass@k.

Everything here matches ``lcb_runner`` (the LiveCodeBench evaluation code) so that numbers
are comparable:

- **Call-based** problems: each input line is one JSON argument, the program is called as
  ``Solution().<func_name>(*args)`` (one ``Solution`` instance for all tests), a returned
  tuple counts as a list, and the result must equal the JSON-decoded expected output.
- **Stdin** problems: output and expected output are stripped, split into lines and each
  line stripped; the line counts must agree; a line that differs as text is compared as a
  list of :class:`~decimal.Decimal` numbers.
- pass@k is the unbiased estimator ``1 - C(n-c, k) / C(n, k)`` in its stable product form.

How programs are extracted, prepared and how returned values travel is in
:mod:`thoughtmdp.envs.livecodebench.programs`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from thoughtmdp.runs.stats import pass_at_k


class Verdict(enum.StrEnum):
    """The result of one test, with ``lcb_runner``'s integer code as :attr:`lcb_code`."""

    PASSED = "passed"
    WRONG_ANSWER = "wrong_answer"
    TIME_LIMIT = "time_limit"
    RUNTIME_ERROR = "runtime_error"
    COMPILE_ERROR = "compile_error"
    GRADER_ERROR = "grader_error"
    """The grader could not judge the program (its output defeated the comparison, say)."""

    @property
    def lcb_code(self) -> bool | int:
        """``True`` for a pass, else ``lcb_runner``'s error code.

        -2 wrong answer, -3 time limit, -4 runtime error, -5 grader error (``lcb_runner``'s
        ``TestRunnerError``). ``lcb_runner`` has no separate code for a program that fails to
        load; it reports -4, and so does this.
        """
        return _LCB_CODES[self]


_LCB_CODES: dict[Verdict, bool | int] = {
    Verdict.PASSED: True,
    Verdict.WRONG_ANSWER: -2,
    Verdict.TIME_LIMIT: -3,
    Verdict.RUNTIME_ERROR: -4,
    Verdict.COMPILE_ERROR: -4,
    Verdict.GRADER_ERROR: -5,
}


@dataclass(frozen=True)
class CodeTest:
    """One test of a problem.

    Attributes:
        input: Stdin text, or one JSON argument per line for call-based problems.
        output: Expected stdout, or the JSON of the expected return value.
        testtype: ``"stdin"`` or ``"functional"``.
    """

    input: str
    output: str
    testtype: str = "stdin"


@dataclass(frozen=True)
class TestResult:
    """The verdict on one test, with a short human-readable reason.

    Attributes:
        verdict: What happened.
        message: Why (empty for a pass).
        seconds: Time the test took in the child, when known.
    """

    __test__ = False  # not a pytest test class

    verdict: Verdict
    message: str = ""
    seconds: float | None = None


@dataclass(frozen=True)
class ProgramResult:
    """The verdicts of one program on a list of tests.

    Attributes:
        results: One entry per test that was graded, in test order; shorter than the test
            list when grading stopped at the first failure.
        total: The number of tests the program was meant to face.
        isolation: The confinement the sandbox achieved, as reported by the child.
    """

    results: tuple[TestResult, ...]
    total: int
    isolation: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        """Tests passed."""
        return sum(r.verdict is Verdict.PASSED for r in self.results)

    @property
    def all_passed(self) -> bool:
        """Every test was graded and passed (``lcb_runner``'s ``graded`` flag)."""
        return self.total > 0 and self.passed == self.total

    @property
    def fraction(self) -> float:
        """Share of all tests passed; 0.0 for an empty test list."""
        return self.passed / self.total if self.total else 0.0


def stdout_matches(output: str, expected: str) -> tuple[bool, str]:
    r"""Compare a program's stdout with the expected output, line by line.

    Args:
        output: What the program printed.
        expected: The test's expected output.

    Returns:
        ``(True, "")`` on a match, else ``(False, reason)``.

    >>> stdout_matches("3.0 \n 4\n\n", "3.000\n4")
    (True, '')
    >>> stdout_matches("1\n2", "1")
    (False, 'wrong answer: 2 output lines, expected 1')
    """
    got, want = _stripped_lines(output), _stripped_lines(expected)
    if len(got) != len(want):
        return False, f"wrong answer: {len(got)} output lines, expected {len(want)}"
    for number, (line, gold) in enumerate(zip(got, want, strict=True), start=1):
        if line == gold:
            continue
        numbers, gold_numbers = _decimals(line), _decimals(gold)
        if numbers is None or gold_numbers is None or numbers != gold_numbers:
            return False, f"wrong answer on line {number}: {_clip(line)} != {_clip(gold)}"
    return True, ""


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    """The numbers of a line, or ``None`` if a word is no number (NaN never equals anything)."""
    try:
        numbers = [Decimal(word) for word in line.split()]
    except (InvalidOperation, ValueError):
        return None
    return None if any(number.is_nan() for number in numbers) else numbers


def return_value_matches(value: Any, expected: Any) -> tuple[bool, str]:
    """Compare a decoded return value with the JSON-decoded expected output (exact ``==``).

    Args:
        value: The value as :func:`decode_value` rebuilt it (top-level tuples are lists).
        expected: ``json.loads`` of the test's output.

    Returns:
        ``(True, "")`` on a match, else ``(False, reason)``.

    >>> return_value_matches([1, 2], [1, 2])
    (True, '')
    >>> return_value_matches([(1, 2)], [[1, 2]])[0]
    False
    """
    try:
        equal = bool(value == expected)
    except Exception as exc:  # an exotic or too deeply nested value that cannot be compared
        return False, f"wrong answer: comparison failed ({type(exc).__name__})"
    if equal:
        return True, ""
    return False, f"wrong answer: returned {_show(value)}, expected {_show(expected)}"


def _show(value: Any) -> str:
    """A short ``repr``, also for values too deep or too long to print whole."""
    try:
        return _clip(repr(value))
    except (RecursionError, ValueError, MemoryError):
        return f"<a {type(value).__name__} too large to show>"


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float | None:
    """pass@k averaged over problems, or ``None`` when a problem has fewer than k samples.

    Args:
        counts: ``(samples, passed)`` per problem.
        k: The k of pass@k.

    Returns:
        The mean, as ``lcb_runner`` reports it only when every problem has ``k`` samples.
    """
    if not counts or any(n < k for n, _ in counts):
        return None
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]
