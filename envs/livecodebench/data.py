"""LiveCodeBench ``code_generation_lite`` rows: decoding, release filters, test splits.

A row has ``question_title, question_content, platform, question_id, contest_id,
contest_date, starter_code, difficulty, public_test_cases, private_test_cases, metadata``.
Test-case fields hold a JSON list of ``{"input", "output", "testtype"}``; private tests are
often compressed: base64, then zlib, then a pickle of that JSON text. The pickle is read by
:class:`StrOnlyUnpickler`, which accepts a plain ``str`` and nothing else, so a crafted file
cannot run code while it is loaded. ``metadata`` (JSON) has ``func_name`` for call-based
(LeetCode, ``class Solution``) problems; the others read stdin and write stdout.

Release versions follow LiveCodeBench: ``release_vN`` holds every problem up to version N,
``vN`` only the problems version N added, ``vA_vB`` those added by versions A to B, and
``release_latest`` everything. The dataset assigns versions by file, not by a field, so a
local file needs a version per problem: a row field (``version_field``) or, by default, the
contest date and :data:`RELEASE_ENDS`.
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle
import re
import zlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from thoughtmdp.envs.livecodebench.grading import CodeTest
from thoughtmdp.envs.sandbox.values import MAX_INT_DIGITS, bounded_loads, json_depth
from thoughtmdp.errors import DatasetFieldError

RELEASE_ENDS: dict[int, date] = {
    1: date(2024, 4, 1),
    2: date(2024, 6, 1),
    3: date(2024, 8, 1),
    4: date(2024, 10, 1),
    5: date(2025, 2, 1),
    6: date(2025, 5, 1),
}
"""First contest date *after* each release version's window (windows start May 2023).

From the release notes of LiveCodeBench (its README and the dataset card): v1 covers
May 2023 - Mar 2024 (400 problems), v2 up to May 2024 (511), v3 up to Jul 2024 (612), v4 up
to Sep 2024 (713), v5 up to Jan 2025 (880), v6 up to Apr 2025 (1055). Those notes give
months, not days, so a problem dated in a release's last month counts as that release's.
Pass ``release_ends`` (or a ``version_field``) where the exact files matter.
"""

MAX_DECOMPRESSED = 1 << 30
"""Largest decompressed private-test blob accepted (bytes), against zlib bombs."""
MAX_DECOMPRESSED_TOTAL = 4 << 30
"""Most bytes all compressed fields of one file may inflate to, together."""
MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a test field (real ones nest three levels)."""


class DecodeBudget:
    """Bytes that the compressed fields of one file may still inflate to.

    Args:
        total: The bytes allowed in all.
    """

    def __init__(self, total: int = MAX_DECOMPRESSED_TOTAL) -> None:
        self.total = total
        self.left = total

    def spend(self, size: int) -> None:
        """Count ``size`` inflated bytes."""
        self.left -= size


class UnsafePickleError(DatasetFieldError):
    """A compressed test field holds a pickle of something other than a plain string."""


class StrOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds no objects but strings: every global lookup is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every class and function reference.

        Raises:
            UnsafePickleError: Always.
        """
        raise UnsafePickleError(f"refers to {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids.

        Raises:
            UnsafePickleError: Always.
        """
        raise UnsafePickleError("uses a persistent id")


def unpickle_str(data: bytes) -> str:
    """Read a pickle that must hold one plain ``str``.

    Args:
        data: The pickle.

    Returns:
        The string.

    Raises:
        UnsafePickleError: If the pickle refers to any class or function, or holds another
            type (the message says which).
        pickle.UnpicklingError: If the data is not a valid pickle.

    >>> unpickle_str(pickle.dumps("[]"))
    '[]'
    """
    value = StrOnlyUnpickler(io.BytesIO(data)).load()
    if type(value) is not str:
        raise UnsafePickleError(f"holds a {type(value).__name__}, not a str")
    return value


def decode_tests(
    value: Any, path: str, line: int, field: str, budget: DecodeBudget | None = None
) -> tuple[CodeTest, ...]:
    """Decode a test-case field: a JSON list, or base64 -> zlib -> pickle -> JSON list.

    Args:
        value: The field as stored.
        path: The file (or dataset), for messages.
        line: The row's line, for messages.
        field: The field name, for messages.
        budget: What the file's compressed fields may still inflate to (default: a fresh
            :data:`MAX_DECOMPRESSED_TOTAL`).

    Returns:
        The tests, in order.

    Raises:
        DatasetFieldError: If the field cannot be decoded, nests too deeply, inflates past
            a limit, or a test lacks a key.
        UnsafePickleError: If the pickle is anything but a plain string.
    """
    where = f"{path}, line {line}: field {field!r}"
    text = value if isinstance(value, str) else None
    cases: Any = value if isinstance(value, list) else None
    if text is not None:
        try:
            cases = load_json(text, where)
        except DatasetFieldError:
            raise
        except ValueError:
            cases = load_json(_decompress(text, where, budget or DecodeBudget()), where)
    if not isinstance(cases, list):
        raise DatasetFieldError(f"{where} must hold a list of tests, got {type(cases).__name__}")
    return tuple(_test(case, where, i) for i, case in enumerate(cases))


def load_json(text: str, where: str) -> Any:
    """``json.loads`` bounded in depth (:data:`MAX_JSON_DEPTH`) and in integer length.

    Raises:
        DatasetFieldError: If ``text`` nests too deeply (``where`` names the field).
        ValueError: If it is not JSON.
    """
    if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise DatasetFieldError(f"{where} nests JSON deeper than {MAX_JSON_DEPTH} levels")
    return bounded_loads(text, MAX_JSON_DEPTH, MAX_INT_DIGITS)


def _decompress(text: str, where: str, budget: DecodeBudget) -> str:
    limit = max(0, min(MAX_DECOMPRESSED, budget.left))
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, limit or 1)
    except (ValueError, binascii.Error, zlib.error):
        raise DatasetFieldError(
            f"{where} is neither JSON nor base64 of zlib-compressed pickled JSON; "
            "export the row again from the LiveCodeBench dataset"
        ) from None
    if inflater.unconsumed_tail or not limit:
        if limit < MAX_DECOMPRESSED:
            raise DatasetFieldError(
                f"{where}: the file's compressed fields inflate past {budget.total} bytes in "
                "all; refusing it"
            )
        raise DatasetFieldError(f"{where} inflates past {MAX_DECOMPRESSED} bytes; refusing it")
    budget.spend(len(data))
    try:
        return unpickle_str(data)
    except UnsafePickleError as exc:
        raise UnsafePickleError(
            f"{where}: the pickled tests {exc}; only a pickled str is accepted, so this row "
            "was not written by LiveCodeBench's exporter: check where the file came from"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise DatasetFieldError(f"{where} holds a damaged pickle ({exc})") from None


def _test(case: Any, where: str, index: int) -> CodeTest:
    if not isinstance(case, Mapping) or not {"input", "output"} <= set(case):
        raise DatasetFieldError(
            f"{where}, test {index}: expected an object with 'input', 'output' and 'testtype', "
            f"got {str(case)[:80]!r}"
        )
    return CodeTest(str(case["input"]), str(case["output"]), str(case.get("testtype", "stdin")))


def check_call_tests(tests: Iterable[CodeTest], where: str) -> None:
    """Check that every input line and every output of call-based tests is JSON.

    Raises:
        DatasetFieldError: Naming the first test that is not.
    """
    for index, test in enumerate(tests):
        try:
            for text in (*test.input.split("\n"), test.output):
                load_json(text, f"{where}, test {index}")
        except DatasetFieldError:
            raise
        except ValueError:
            raise DatasetFieldError(
                f"{where}, test {index}: a call-based test needs one JSON value per input line "
                f"and a JSON output, got input {test.input[:60]!r}"
            ) from None


def parse_date(value: Any, what: str) -> datetime:
    """A date from ``datetime``/``date`` objects or ISO text (``2024-05-01[T00:00:00]``).

    Raises:
        ValueError: If ``value`` is none of those (the message names ``what``).
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"{what} must be an ISO date such as 2024-05-01, got {value!r}") from None


_RELEASE = re.compile(r"^(?:release_v(\d+)|v(\d+)(?:_v(\d+))?|release_latest)$")


def release_versions(spec: str, latest: int) -> frozenset[int]:
    """The version numbers a release tag selects.

    Args:
        spec: ``release_vN`` (versions 1..N), ``vN`` (N only), ``vA_vB`` (A..B) or
            ``release_latest`` (all).
        latest: The newest version known.

    Returns:
        The selected versions.

    Raises:
        ValueError: On an unknown tag or an empty range.

    >>> sorted(release_versions("release_v3", 6)), sorted(release_versions("v2_v4", 6))
    ([1, 2, 3], [2, 3, 4])
    """
    match = _RELEASE.match(spec)
    if match is None:
        raise ValueError(
            f"unknown release version {spec!r}; use release_vN, vN, vA_vB or release_latest"
        )
    cumulative, first, last = match.groups()
    if cumulative:
        versions = range(1, int(cumulative) + 1)
    elif first:
        versions = range(int(first), int(last or first) + 1)
    else:
        versions = range(1, latest + 1)
    if not versions:
        raise ValueError(f"release version {spec!r} selects no version")
    return frozenset(versions)


def version_of(contest_date: datetime, ends: Mapping[int, date]) -> int | None:
    """The release version whose window holds ``contest_date`` (``None`` past the last)."""
    for version in sorted(ends):
        if contest_date.date() < ends[version]:
            return version
    return None


def parse_version(value: Any, where: str) -> int:
    """A version from ``3``, ``"3"``, ``"v3"`` or ``"release_v3"``.

    Raises:
        DatasetFieldError: For anything else.
    """
    match = re.fullmatch(r"(?:release_)?v?(\d+)", str(value).strip())
    if match is None:
        raise DatasetFieldError(f"{where}: expected a release version such as v3, got {value!r}")
    return int(match.group(1))
