"""LiveCodeBench problems: loading rows, filtering them, splitting each one's tests.

Rows come from a local ``.jsonl``/``.json``/``.parquet`` file or, where the network allows,
the Hugging Face dataset (``livecodebench/code_generation_lite``). Decoding details live in
:mod:`thoughtmdp.envs.livecodebench.data`.

Each problem's tests are split, deterministically, into a **training verifier** (the
public tests, which the statement shows anyway, plus part of the private ones) and a
**held-out** set (the rest of the private tests). The split depends only on the seed, the
problem id and the test's position, not on which other problems were loaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from thoughtmdp.data import Row, is_data_file, load_hf_dataset, read_rows, require_field
from thoughtmdp.envs.livecodebench.data import (
    RELEASE_ENDS,
    DecodeBudget,
    check_call_tests,
    decode_tests,
    load_json,
    parse_date,
    parse_version,
    release_versions,
    version_of,
)
from thoughtmdp.envs.livecodebench.grading import CodeTest
from thoughtmdp.errors import DatasetFieldError

HF_DATASET = "livecodebench/code_generation_lite"
FIELDS = (
    "question_title", "question_content", "platform", "question_id", "contest_id",
    "contest_date", "starter_code", "difficulty", "public_test_cases", "private_test_cases",
    "metadata",
)  # fmt: skip


@dataclass(frozen=True)
class LCBProblem:
    """One LiveCodeBench problem.

    Attributes:
        question_id: The dataset's id (unique).
        title: ``question_title``.
        content: ``question_content``, the statement.
        platform: ``leetcode``, ``atcoder`` or ``codeforces``.
        contest_id: The contest.
        contest_date: When the contest took place.
        starter_code: The ``class Solution`` skeleton of call-based problems, else empty.
        difficulty: ``easy``, ``medium`` or ``hard``.
        public_tests: The examples of the statement.
        private_tests: The hidden tests.
        func_name: The method to call (call-based problems), else ``None``.
        version: The release version from a row field, when the loader was told one.
        line: The row's line in its file.
    """

    question_id: str
    title: str
    content: str
    platform: str
    contest_id: str
    contest_date: datetime
    starter_code: str
    difficulty: str
    public_tests: tuple[CodeTest, ...]
    private_tests: tuple[CodeTest, ...]
    func_name: str | None = None
    version: int | None = None
    line: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def tests(self) -> tuple[CodeTest, ...]:
        """Public then private tests: what ``lcb_runner`` grades."""
        return self.public_tests + self.private_tests


def load_problems(
    data: str | os.PathLike[str], *, version_field: str | None = None
) -> list[LCBProblem]:
    """Read every problem of a file, or of the Hugging Face dataset's ``test`` split.

    Args:
        data: A ``.jsonl``/``.json``/``.parquet`` file, or a dataset name (used when
            ``data`` is not an existing file and has no data-file ending).
        version_field: A row field holding each problem's release version (``3``,
            ``"v3"``...), instead of deriving it from the contest date.

    Returns:
        The problems in file order.

    Raises:
        FileNotFoundError: If a data file does not exist.
        DatasetFieldError: If a row lacks a field or a field cannot be decoded (the message
            names file, line and field); :class:`UnsafePickleError` for a crafted pickle.
        ValueError: If two rows share a ``question_id``.
    """
    path = os.fspath(data)
    try:
        rows = read_rows(path) if is_data_file(path) or os.path.isfile(path) else None
    except RecursionError:
        raise DatasetFieldError(f"{path}: a row nests JSON too deeply to read") from None
    if rows is None:
        rows = load_hf_dataset(path, "test")
    budget = DecodeBudget()
    problems = [parse_problem(row, path, version_field, budget) for row in rows]
    seen: dict[str, int] = {}
    for problem in problems:
        if problem.question_id in seen:
            raise ValueError(
                f"{path}, line {problem.line}: question_id {problem.question_id!r} repeats "
                f"line {seen[problem.question_id]}; each problem must appear once"
            )
        seen[problem.question_id] = problem.line
    return problems


def parse_problem(
    row: Row, path: str, version_field: str | None = None, budget: DecodeBudget | None = None
) -> LCBProblem:
    """Build an :class:`LCBProblem` from one row.

    ``budget`` bounds what the compressed fields of the whole file inflate to (by default,
    those of this row alone).

    Raises:
        DatasetFieldError: If a field is missing, null or malformed.
    """
    hint = "rows must follow LiveCodeBench's code_generation_lite layout"
    values = {
        name: require_field(row.data, name, path=path, line=row.line, hint=hint) for name in FIELDS
    }
    where = f"{path}, line {row.line}"
    metadata = values["metadata"]
    if isinstance(metadata, str):
        try:
            metadata = load_json(metadata or "{}", f"{where}: field 'metadata'")
        except DatasetFieldError:
            raise
        except ValueError:
            raise DatasetFieldError(f"{where}: field 'metadata' is not JSON") from None
    if not isinstance(metadata, dict):
        raise DatasetFieldError(f"{where}: field 'metadata' must be a JSON object")
    try:
        contest_date = parse_date(values["contest_date"], "contest_date")
    except ValueError as exc:
        raise DatasetFieldError(f"{where}: field {exc}") from None
    func_name = metadata.get("func_name") or None
    budget = budget or DecodeBudget()
    public, private = (
        decode_tests(values[name], path=path, line=row.line, field=name, budget=budget)
        for name in ("public_test_cases", "private_test_cases")
    )
    if func_name is not None:
        check_call_tests(public, f"{where}: field 'public_test_cases'")
        check_call_tests(private, f"{where}: field 'private_test_cases'")
    version = None
    if version_field is not None:
        raw = require_field(row.data, version_field, path=path, line=row.line)
        version = parse_version(raw, f"{where}: field {version_field!r}")
    return LCBProblem(
        question_id=str(values["question_id"]), title=str(values["question_title"]),
        content=str(values["question_content"]), platform=str(values["platform"]).lower(),
        contest_id=str(values["contest_id"]), contest_date=contest_date,
        starter_code=str(values["starter_code"]), difficulty=str(values["difficulty"]).lower(),
        public_tests=public, private_tests=private, func_name=func_name, version=version,
        line=row.line, metadata=metadata,
    )  # fmt: skip


def filter_problems(
    problems: Sequence[LCBProblem],
    *,
    release_version: str | None = None,
    start_date: str | date | None = None,
    end_date: str | date | None = None,
    difficulty: str | Collection[str] | None = None,
    platform: str | Collection[str] | None = None,
    release_ends: Mapping[int, date] = RELEASE_ENDS,
) -> list[LCBProblem]:
    """The problems that pass every filter given, in their order.

    Args:
        problems: The problems.
        release_version: ``release_vN``, ``vN``, ``vA_vB``, or ``release_latest`` (every
            problem, newer than the last known version included).
        start_date: Keep contests on or after this date.
        end_date: Keep contests on or before this date (a bare date means the whole day).
        difficulty: ``easy``/``medium``/``hard``, or several.
        platform: ``leetcode``/``atcoder``/``codeforces``, or several.
        release_ends: The first date after each version (when problems carry no version).

    Returns:
        The kept problems.

    Raises:
        ValueError: On an unknown release tag or a malformed date.
    """
    kept = list(problems)
    if release_version is not None and release_version != "release_latest":
        wanted = release_versions(release_version, max(release_ends))
        kept = [p for p in kept if _version(p, release_ends) in wanted]
    if start_date is not None:
        start = parse_date(start_date, "start_date")
        kept = [p for p in kept if p.contest_date >= start]
    if end_date is not None:
        end = parse_date(end_date, "end_date")
        if not isinstance(end_date, datetime) and "T" not in str(end_date):
            end = end.replace(hour=23, minute=59, second=59, microsecond=999999)
        kept = [p for p in kept if p.contest_date <= end]
    for name, choice in (("difficulty", difficulty), ("platform", platform)):
        if choice is not None:
            allowed = {choice.lower()} if isinstance(choice, str) else {c.lower() for c in choice}
            kept = [p for p in kept if getattr(p, name) in allowed]
    return kept


def _version(problem: LCBProblem, ends: Mapping[int, date]) -> int | None:
    return (
        problem.version if problem.version is not None else version_of(problem.contest_date, ends)
    )


def split_tests(
    problem: LCBProblem, heldout_fraction: float, seed: int = 0
) -> tuple[tuple[CodeTest, ...], tuple[CodeTest, ...]]:
    """Split a problem's tests into a training verifier and a held-out set.

    ``round(heldout_fraction * private tests)`` private tests are held out, chosen by a hash
    of ``(seed, question_id, position)``; at least one test always stays for training.

    Args:
        problem: The problem.
        heldout_fraction: Share of the private tests to hold out, in ``[0, 1]``.
        seed: Selects another split.

    Returns:
        ``(training tests, held-out tests)``, each in dataset order.

    Raises:
        ValueError: If ``heldout_fraction`` is outside ``[0, 1]``.
    """
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    private = problem.private_tests
    count = int(heldout_fraction * len(private) + 0.5)
    if not problem.public_tests and private:
        count = min(count, len(private) - 1)

    def rank(index: int) -> bytes:
        return hashlib.sha256(f"{seed}\0{problem.question_id}\0{index}".encode()).digest()

    held = set(sorted(range(len(private)), key=rank)[:count])
    train = problem.public_tests + tuple(t for i, t in enumerate(private) if i not in held)
    return train, tuple(t for i, t in enumerate(private) if i in held)
