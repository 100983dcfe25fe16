"""Grading files of code samples of LiveCodeBench problems (``thoughtmdp eval-code``).

Samples come in LiveCodeBench's custom-evaluation format, one object per problem:
``{"question_id": ..., "code_list": [program, ...]}`` (a ``.jsonl`` file or a ``.json``
list). Every program runs in the sandbox on the chosen tests (``all``: public and private,
as ``lcb_runner`` grades; ``train``/``heldout``: the task's split), stopping at its first
failing test as ``lcb_runner`` does unless ``--all-tests`` is given. The command prints
one row per problem (passed samples / samples, pass@1) and the means, and with ``--out``
writes ``lcb_runner``'s evaluation layout: one object per problem with ``question_id``,
``code_list``, ``graded_list``, ``pass@1`` and ``metadata`` (per sample, a JSON string
with the per-test result codes and messages, as ``lcb_runner`` stores it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any

from thoughtmdp.data import read_rows, require_field
from thoughtmdp.envs.livecodebench.grading import CodeTest, ProgramResult, Verdict, mean_pass_at_k
from thoughtmdp.envs.livecodebench.judge import judge
from thoughtmdp.envs.livecodebench.problems import LCBProblem, load_problems, split_tests
from thoughtmdp.envs.sandbox.sandbox import Sandbox, SandboxConfig, SandboxError
from thoughtmdp.errors import DatasetFieldError, ThoughtMDPError

SPLITS = ("all", "train", "heldout")


@dataclass(frozen=True)
class Samples:
    """The programs written for one problem.

    Attributes:
        question_id: The problem.
        codes: The programs, in file order.
        line: Where the row is in the samples file.
    """

    question_id: str
    codes: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class ProblemGrades:
    """The verdicts of every sample of one problem.

    Attributes:
        question_id: The problem.
        codes: The programs.
        results: One :class:`ProgramResult` per program.
    """

    question_id: str
    codes: tuple[str, ...]
    results: tuple[ProgramResult, ...]

    @property
    def graded_list(self) -> list[bool]:
        """Per sample: whether it passed every test."""
        return [r.all_passed for r in self.results]

    @property
    def pass_at_1(self) -> float:
        """Share of samples that passed."""
        return sum(self.graded_list) / len(self.results) if self.results else 0.0


def read_samples(path: str) -> list[Samples]:
    """Read a samples file (``.jsonl`` or a ``.json`` list).

    Raises:
        DatasetFieldError: If a row lacks ``question_id``/``code_list``, ``code_list`` is not
            a list of strings, or a problem appears twice (file and line are named).
    """
    seen: dict[str, int] = {}
    samples = []
    for row in read_rows(path):
        qid = str(require_field(row.data, "question_id", path=path, line=row.line))
        codes = require_field(row.data, "code_list", path=path, line=row.line)
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise DatasetFieldError(
                f"{path}, line {row.line}: field 'code_list' must be a list of program strings"
            )
        if qid in seen:
            raise DatasetFieldError(
                f"{path}, line {row.line}: question_id {qid!r} repeats line {seen[qid]}; "
                "put all programs of a problem in one code_list"
            )
        seen[qid] = row.line
        samples.append(Samples(qid, tuple(codes), row.line))
    return samples


def select_tests(
    problem: LCBProblem, split: str, fraction: float, seed: int
) -> tuple[CodeTest, ...]:
    """The tests of ``problem`` that ``split`` (``all``, ``train``, ``heldout``) names."""
    if split == "all":
        return problem.tests
    train, heldout = split_tests(problem, fraction, seed)
    return train if split == "train" else heldout


def grade_samples(
    sandbox: Sandbox,
    jobs: Sequence[tuple[LCBProblem, Samples, tuple[CodeTest, ...]]],
    *,
    stop_on_failure: bool = True,
    on_done: Callable[[], None] | None = None,
) -> list[ProblemGrades]:
    """Grade every program of every problem on the sandbox's thread pool.

    Args:
        sandbox: Where programs run.
        jobs: ``(problem, its samples, the tests to use)`` per problem.
        stop_on_failure: End each program at its first failing test (``lcb_runner``).
        on_done: Called after each program (for a progress bar).

    Returns:
        The grades, in the order of ``jobs``.
    """
    futures = {}
    for position, (problem, samples, tests) in enumerate(jobs):
        for index, code in enumerate(samples.codes):
            future = sandbox.executor.submit(
                judge,
                sandbox,
                code,
                tests,
                func_name=problem.func_name,
                stop_on_failure=stop_on_failure,
            )
            futures[future] = (position, index)
    results: dict[tuple[int, int], ProgramResult] = {}
    for future in as_completed(futures):
        results[futures[future]] = future.result()
        if on_done is not None:
            on_done()
    return [
        ProblemGrades(s.question_id, s.codes, tuple(results[i, j] for j in range(len(s.codes))))
        for i, (_, s, _) in enumerate(jobs)
    ]


def sample_metadata(result: ProgramResult) -> dict[str, Any]:
    """Per-test codes and messages of one program, with ``lcb_runner``'s error fields."""
    metadata: dict[str, Any] = {
        "results": [r.verdict.lcb_code for r in result.results],
        "verdicts": [r.verdict.value for r in result.results],
        "messages": [r.message for r in result.results],
        "isolation": result.isolation,
    }
    failure = next((r for r in result.results if r.verdict is not Verdict.PASSED), None)
    if failure is not None:
        metadata["error_code"] = failure.verdict.lcb_code
        metadata["error_message"] = failure.message
    return metadata


def lcb_rows(grades: Sequence[ProblemGrades]) -> list[dict[str, Any]]:
    """The evaluation layout of ``lcb_runner``: one object per problem, by question_id."""
    return [
        {
            "question_id": g.question_id,
            "code_list": list(g.codes),
            "graded_list": g.graded_list,
            "pass@1": g.pass_at_1,
            "metadata": [json.dumps(sample_metadata(r)) for r in g.results],
        }
        for g in sorted(grades, key=lambda g: g.question_id)
    ]


def print_report(grades: Sequence[ProblemGrades], ks: Sequence[int], console: Any) -> None:
    """Print one row per problem and the pass@k means (for the ks every problem allows)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="LiveCodeBench samples", show_footer=False)
    table.add_column("question_id")
    table.add_column("passed / samples", justify="right")
    table.add_column("pass@1", justify="right")
    for g in sorted(grades, key=lambda g: g.question_id):
        table.add_row(
            escape(g.question_id), f"{sum(g.graded_list)} / {len(g.results)}", f"{g.pass_at_1:.3f}"
        )
    console.print(table)
    counts = [(len(g.results), sum(g.graded_list)) for g in grades]
    for k in ks:
        value = mean_pass_at_k(counts, k)
        if value is not None:
            console.print(f"pass@{k} = {value:.4f} over {len(grades)} problems")
    isolation: dict[str, Any] = next(
        (r.isolation for g in grades for r in g.results if r.isolation), {}
    )
    if isolation:
        console.print(f"sandbox: {escape(describe_isolation(isolation))}")


def describe_isolation(isolation: dict[str, Any]) -> str:
    """One line summing up an isolation report."""
    keys = ("user", "namespaces", "seccomp")
    parts = [f"{key} {isolation.get(key)}" for key in keys if key in isolation]
    limits = isolation.get("rlimits", {})
    if limits:
        parts.append("rlimits " + ",".join(k.removeprefix("RLIMIT_") for k in limits))
    return "; ".join(parts)


def grade_files(args: argparse.Namespace) -> int:
    """Grade the samples an ``eval-code`` command line names; returns the exit code."""
    from rich.console import Console
    from rich.progress import Progress

    error = Console(stderr=True)
    try:
        jobs = _jobs(args)
    except (OSError, ThoughtMDPError, ValueError) as exc:
        print(f"thoughtmdp eval-code: error: {exc}", file=sys.stderr)
        return 1
    config = SandboxConfig(
        test_timeout=args.timeout,
        max_concurrency=args.max_concurrency,
        isolation=getattr(args, "isolation", "strict"),
    )
    sandbox = Sandbox(config)
    total = sum(len(samples.codes) for _, samples, _ in jobs)
    try:
        with Progress(console=error, transient=True, disable=total < 20) as progress:
            bar = progress.add_task("grading programs", total=total)
            grades = grade_samples(
                sandbox, jobs, stop_on_failure=not args.all_tests,
                on_done=lambda: progress.advance(bar),
            )  # fmt: skip
    except SandboxError as exc:
        print(f"thoughtmdp eval-code: error: {exc}", file=sys.stderr)
        return 1
    finally:
        sandbox.close()
    if args.out:  # first: the grades are kept whatever happens to the report
        with open(args.out, "w", encoding="utf-8") as file:
            json.dump(lcb_rows(grades), file, indent=2)
    print_report(grades, args.k, Console(highlight=False))
    return 0


def _jobs(args: argparse.Namespace) -> list[tuple[LCBProblem, Samples, tuple[CodeTest, ...]]]:
    if not os.path.isfile(args.problems):
        raise FileNotFoundError(f"no problems file {args.problems!r}")
    if not os.path.isfile(args.samples):
        raise FileNotFoundError(f"no samples file {args.samples!r}")
    problems = {p.question_id: p for p in load_problems(args.problems)}
    jobs = []
    for samples in read_samples(args.samples):
        problem = problems.get(samples.question_id)
        if problem is None:
            raise DatasetFieldError(
                f"{args.samples}, line {samples.line}: question_id {samples.question_id!r} is "
                f"not in {args.problems}; grade samples against the problems they were made for"
            )
        tests = select_tests(
            problem, args.split, fraction=args.heldout_fraction, seed=args.split_seed
        )
        jobs.append((problem, samples, tests))
    return jobs
