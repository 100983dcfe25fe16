"""Judging a program on tests: build the sandbox job, turn outcomes into verdicts.

The sandbox child only reports what a program printed or returned; the comparison with the
expected output happens here, in the parent, with the semantics of
:mod:`thoughtmdp.envs.livecodebench.grading`. With ``stop_on_failure`` the run ends at
the first test that does not pass, as ``lcb_runner`` does; without it every test runs (for a
reward that counts the share of tests passed).
"""

from __future__ import annotations

from collections.abc import Sequence

from thoughtmdp.envs.livecodebench.grading import (
    CodeTest,
    ProgramResult,
    TestResult,
    Verdict,
    return_value_matches,
    stdout_matches,
)
from thoughtmdp.envs.livecodebench.programs import (
    ENTRY_POINT,
    HEADER_MODULES,
    prepare_call_program,
    prepare_stdin_program,
)
from thoughtmdp.envs.sandbox.sandbox import Job, Outcome, Sandbox, SandboxError
from thoughtmdp.envs.sandbox.values import (
    MAX_INT_DIGITS,
    MAX_VALUE_DEPTH,
    bounded_loads,
    decode_value,
)


def make_job(
    code: str, tests: Sequence[CodeTest], func_name: str | None, lcb_compat: bool = True
) -> Job:
    """The sandbox job that runs ``code`` on ``tests``.

    Args:
        code: The program as the model wrote it.
        tests: The tests (only their inputs go to the sandbox).
        func_name: The method to call for a call-based problem, ``None`` for stdin.
        lcb_compat: Run stdin programs the way ``lcb_runner`` does (wrapped into a
            function, see :func:`~thoughtmdp.envs.livecodebench.programs.prepare_stdin_program`);
            when False, run them as a plain ``__main__`` script per test.

    Returns:
        The job.
    """
    inputs = tuple(test.input for test in tests)
    if func_name is not None:
        source = prepare_call_program(code)
        offset = source.count("\n") - code.count("\n")
        return Job(
            source,
            "call",
            inputs,
            entry=func_name,
            solution_class="class Solution" in code,
            line_offset=offset,
            preload=HEADER_MODULES,
        )
    if lcb_compat:
        program = prepare_stdin_program(code)
        return Job(program, "function", inputs, entry=ENTRY_POINT, preload=HEADER_MODULES)
    return Job(code, "script", inputs, preload=HEADER_MODULES)


def verdict(outcome: Outcome, test: CodeTest, call_based: bool) -> TestResult:
    """The verdict on one test from its outcome and expected output; never raises.

    Args:
        outcome: What the sandbox reported.
        test: The test, with its expected output.
        call_based: Compare a returned value (True) or the printed output (False).

    Returns:
        The test's result; :attr:`Verdict.GRADER_ERROR` when the comparison itself failed.
    """
    try:
        return _verdict(outcome, test, call_based)
    except Exception as exc:  # whatever a hostile output does to the comparison
        return grader_error(exc, outcome.seconds)


def grader_error(exc: BaseException, seconds: float | None = None) -> TestResult:
    """The result of a test the grader could not judge because of ``exc``."""
    text = f"grader error: {type(exc).__name__}: {exc}"
    return TestResult(Verdict.GRADER_ERROR, text[:300], seconds)


def _verdict(outcome: Outcome, test: CodeTest, call_based: bool) -> TestResult:
    seconds = outcome.seconds
    if outcome.status == "ok":
        if call_based:
            try:
                value = decode_value(outcome.value or "null")
            except (ValueError, MemoryError) as exc:
                why = f"unreadable return value ({exc})"[:300]
                return TestResult(Verdict.RUNTIME_ERROR, why, seconds)
            expected = bounded_loads(test.output, MAX_VALUE_DEPTH, MAX_INT_DIGITS)
            good, why = return_value_matches(value, expected)
        else:
            good, why = stdout_matches(outcome.output or "", test.output)
        return TestResult(Verdict.PASSED if good else Verdict.WRONG_ANSWER, why, seconds)
    if outcome.status in ("timeout", "load_timeout") or "SIGXCPU" in outcome.error:
        return TestResult(Verdict.TIME_LIMIT, outcome.error or "time limit exceeded", seconds)
    if outcome.status == "load_error":
        return TestResult(Verdict.COMPILE_ERROR, outcome.error, seconds)
    if outcome.status == "output_limit":
        return TestResult(Verdict.RUNTIME_ERROR, f"output limit: {outcome.error}", seconds)
    return TestResult(Verdict.RUNTIME_ERROR, outcome.error, seconds)


def judge(
    sandbox: Sandbox,
    code: str,
    tests: Sequence[CodeTest],
    func_name: str | None = None,
    *,
    stop_on_failure: bool = False,
    lcb_compat: bool = True,
) -> ProgramResult:
    """Run ``code`` on ``tests`` in ``sandbox`` and grade every test that ran.

    Args:
        sandbox: Where the program runs.
        code: The program as the model wrote it.
        tests: The tests, in order.
        func_name: The method to call for a call-based problem, ``None`` for stdin.
        stop_on_failure: End at the first test that does not pass (``lcb_runner``).
        lcb_compat: See :func:`make_job`.

    Returns:
        The verdicts; with ``stop_on_failure`` they end at the first failure.

    Raises:
        SandboxError: If the sandbox could not start a child (a failure of the setup, not
            of the program). Any other failure grades the tests not yet graded as
            :attr:`Verdict.GRADER_ERROR`.
    """
    if not tests:
        return ProgramResult((), 0)
    call_based = func_name is not None
    results: list[TestResult] = []

    def stop(index: int, outcome: Outcome) -> bool:
        results.append(verdict(outcome, tests[index], call_based))
        return stop_on_failure and results[-1].verdict is not Verdict.PASSED

    try:
        job = make_job(code, tests, func_name=func_name, lcb_compat=lcb_compat)
        report = sandbox.run(job, stop)
    except SandboxError:
        raise
    except Exception as exc:  # the run goes on: this program fails, the others are graded
        failed = grader_error(exc)
        results.extend([failed] * (1 if stop_on_failure else len(tests) - len(results)))
        return ProgramResult(tuple(results[: len(tests)]), len(tests))
    return ProgramResult(tuple(results), len(tests), report.isolation)
