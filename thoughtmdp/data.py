"""Reading the rows of local data files (JSONL, JSON, Parquet) and of Hugging Face datasets.

A Hugging Face dataset is a name on the hub or a folder written by ``save_to_disk`` (a
``Dataset``, or a ``DatasetDict`` whose split is picked by name). Every row keeps its
1-based position so later errors can point at it: the line number in a JSONL file, the
record number in a JSON list, a Parquet file or a Hugging Face split. Nothing heavy is
imported here; ``pyarrow`` and ``datasets`` load only when needed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from thoughtmdp.errors import DatasetFieldError, DependencyNotInstalled, ThoughtMDPError, require

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
JSON_SUFFIXES = frozenset({".json"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
DATA_SUFFIXES = JSONL_SUFFIXES | JSON_SUFFIXES | PARQUET_SUFFIXES
"""File name endings :func:`read_rows` understands."""

SAVED_DATASET_FILES = ("dataset_info.json", "state.json")
"""Files of a folder written by ``datasets.Dataset.save_to_disk``."""

SAVED_DATASET_DICT_FILE = "dataset_dict.json"
"""The file of a folder written by ``datasets.DatasetDict.save_to_disk``."""

DATASETS_INSTALL = 'pip install "thoughtmdp[datasets]"'
"""How to install the ``datasets`` package that Hugging Face datasets need."""

PathLike = str | os.PathLike[str]

logger = logging.getLogger(__name__)


class DataFormatError(ThoughtMDPError, ValueError):
    """A data file has a type or layout that cannot be read as rows."""


class Row(NamedTuple):
    """One record of a data file.

    Attributes:
        line: 1-based line (JSONL) or record number (JSON list, Parquet, datasets split).
        data: The record's fields.
    """

    line: int
    data: dict[str, Any]


def is_data_file(path: PathLike) -> bool:
    """Whether ``path`` names a file :func:`read_rows` can read, by its ending.

    Args:
        path: A path that may or may not exist.

    Returns:
        True when the suffix is one of :data:`DATA_SUFFIXES`.
    """
    return Path(path).suffix.lower() in DATA_SUFFIXES


def read_rows(path: PathLike) -> list[Row]:
    """Read every record of a ``.jsonl``, ``.json`` (a list of objects) or ``.parquet`` file.

    Args:
        path: The file to read.

    Returns:
        The records in file order, each with its 1-based line or record number.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        DatasetFieldError: If a JSONL line is not valid JSON or not a JSON object.
        DataFormatError: If the suffix is unknown or a ``.json`` file is not a list of objects.
        DependencyNotInstalled: If a Parquet file is given and ``pyarrow`` is missing.
    """
    suffix = Path(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path)
    if suffix in JSON_SUFFIXES:
        return _read_json(path)
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    raise DataFormatError(
        f"{path}: unsupported data file type {suffix or '(no suffix)'!r}; expected one of "
        f"{sorted(DATA_SUFFIXES)}; convert the file to JSONL or Parquet"
    )


def require_field(
    row: Mapping[str, Any], field: str, path: PathLike, line: int, *, hint: str = ""
) -> Any:
    """Return ``row[field]``, or raise an error naming the file, the line and the field.

    Args:
        row: The record.
        field: The field that must be present and not null.
        path: The file (or dataset name) the record came from, for the message.
        line: The record's 1-based line or record number, for the message.
        hint: Appended to the message: how to point the reader at the right field.

    Returns:
        The field's value.

    Raises:
        DatasetFieldError: If the field is missing or null.

    >>> require_field({"q": "1+1"}, "q", "data.jsonl", 3)
    '1+1'
    """
    present = sorted(row)
    suffix = f"; {hint}" if hint else ""
    if field not in row:
        raise DatasetFieldError(
            f"{path}, line {line}: missing field {field!r}; the row has fields {present}{suffix}"
        )
    if row[field] is None:
        raise DatasetFieldError(f"{path}, line {line}: field {field!r} is null{suffix}")
    return row[field]


def is_saved_dataset(path: PathLike) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk`` of the ``datasets`` package.

    That is a ``Dataset`` folder (``dataset_info.json`` and ``state.json`` beside the Arrow
    files) or a ``DatasetDict`` folder (``dataset_dict.json`` and one folder per split).

    Args:
        path: A path that may or may not exist.

    Returns:
        True for either kind of folder.

    >>> is_saved_dataset("AI-MO/NuminaMath-CoT")
    False
    """
    folder = Path(path)
    if not folder.is_dir():
        return False
    if (folder / SAVED_DATASET_DICT_FILE).is_file():
        return True
    return all((folder / name).is_file() for name in SAVED_DATASET_FILES)


def dataset_source(name: str, split: str) -> str:
    """How messages name one split of a Hugging Face dataset (a hub name or a folder).

    >>> dataset_source("openai/gsm8k", "test")
    "dataset 'openai/gsm8k', split 'test'"
    """
    return f"dataset {name!r}, split {split!r}"


def load_hf_dataset(name: str, split: str) -> list[Row]:
    """Load one split of a Hugging Face dataset with the ``datasets`` package.

    A folder written by ``save_to_disk`` is read with ``datasets.load_from_disk``: a
    ``DatasetDict`` folder gives its split ``split``; a ``Dataset`` folder holds one split,
    which is read whatever ``split`` says (a warning tells when it recorded another name).
    Anything else goes to ``datasets.load_dataset``: a name on the hub, or a folder of data
    files.

    Args:
        name: The dataset name on the hub (e.g. ``"AI-MO/NuminaMath-CoT"``), a folder
            written by ``save_to_disk``, or a local folder ``datasets.load_dataset`` reads.
        split: The split to load (e.g. ``"train"``).

    Returns:
        The records in order, numbered from 1.

    Raises:
        DependencyNotInstalled: If ``datasets`` is not installed.
        DataFormatError: If a saved ``DatasetDict`` has no split ``split`` (the message
            lists the splits it has).
        Exception: Whatever ``datasets.load_dataset`` raises (an unknown name, an unreachable
            hub), with a note on how to use a local file instead.
    """
    try:
        import datasets  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise DependencyNotInstalled(
            f"loading dataset {name!r} needs the Hugging Face 'datasets' package, which is not "
            f"installed; install it with: {DATASETS_INSTALL} (or pip install datasets), or "
            "pass a local .jsonl or .parquet file instead"
        ) from None
    if is_saved_dataset(name):
        records = _load_saved(datasets, name, split)
    else:
        try:
            records = datasets.load_dataset(name, split=split)
        except Exception as exc:
            exc.add_note(
                f"thoughtmdp: could not load split {split!r} of dataset {name!r}; check the "
                "name, the split and network access, or download the data and pass a local "
                "file path (or a folder written by save_to_disk)"
            )
            raise
    return [Row(i, dict(record)) for i, record in enumerate(records, start=1)]


def _load_saved(datasets: Any, folder: str, split: str) -> Any:
    """The split ``split`` of a ``save_to_disk`` folder (a ``Dataset`` is its own split)."""
    if (Path(folder) / SAVED_DATASET_DICT_FILE).is_file():
        splits = json.loads((Path(folder) / SAVED_DATASET_DICT_FILE).read_text())["splits"]
        if split not in splits:
            raise DataFormatError(
                f"{folder}: the saved DatasetDict has no split {split!r}; its splits are "
                f"{sorted(splits)}; set split= to one of them"
            )
        return datasets.load_from_disk(os.path.join(folder, split))
    dataset = datasets.load_from_disk(folder)
    recorded = getattr(dataset, "split", None)
    if recorded is not None and str(recorded) != split:
        logger.warning(
            "%s: the saved Dataset holds split %r; its rows are read as split %r",
            folder,
            str(recorded),
            split,
        )
    return dataset


def _read_jsonl(path: PathLike) -> list[Row]:
    rows = []
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise DatasetFieldError(
                    f"{path}, line {number}: not valid JSON ({_json_error(exc)}); "
                    "each line of a JSONL file must hold one JSON object"
                ) from None
            rows.append(Row(number, _as_record(record, path, number)))
    return rows


def _read_json(path: PathLike) -> list[Row]:
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        line = _broken_line(exc)
        raise DatasetFieldError(
            f"{path}, line {line}: not valid JSON ({_json_error(exc)})"
        ) from None
    if not isinstance(records, list):
        raise DataFormatError(
            f"{path}: a .json data file must hold a list of objects, got a "
            f"{type(records).__name__}; write one object per line to a .jsonl file instead"
        )
    return [Row(i, _as_record(r, path, i)) for i, r in enumerate(records, start=1)]


def _broken_line(exc: json.JSONDecodeError) -> int:
    r"""The line to blame: where a missing ``,``/``}``/``]`` belonged, not where it was noticed.

    When the parser stops at the first character of a line, what it expected was missing
    at the end of the last non-blank line before it.

    >>> try:
    ...     json.loads('[\n {"a": 1\n\n {"a": 2}\n]')
    ... except json.JSONDecodeError as exc:
    ...     (exc.lineno, _broken_line(exc))
    (4, 2)
    """
    lines = exc.doc[: exc.pos].split("\n")
    if lines[-1].strip() or len(lines) == 1:
        return exc.lineno
    number = len(lines) - 1
    while number > 1 and not lines[number - 1].strip():
        number -= 1
    return number


def _json_error(exc: json.JSONDecodeError) -> str:
    """``json``'s reason and where: a column, or the end of the line (a missing ``}``)."""
    before = exc.doc[: exc.pos].split("\n")[-1]
    after = exc.doc[exc.pos :].split("\n")[0]
    if (exc.lineno > 1 and not before.strip()) or not after.strip():
        return f"{exc.msg} at the end of the line: is a closing brace, bracket or comma missing?"
    return f"{exc.msg} at column {exc.colno}"


def _read_parquet(path: PathLike) -> list[Row]:
    require("pyarrow", "parquet")
    import pyarrow.parquet as pq

    if not Path(path).exists():
        raise FileNotFoundError(f"no such data file: {path}")
    table = pq.read_table(path)
    return [Row(i, record) for i, record in enumerate(table.to_pylist(), start=1)]


def _as_record(record: Any, path: PathLike, line: int) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DatasetFieldError(
            f"{path}, line {line}: expected a JSON object with named fields, "
            f"got a {type(record).__name__}"
        )
    return record
