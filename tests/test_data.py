"""Tests of thoughtmdp.data: reading JSONL/JSON/Parquet rows and naming bad lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from thoughtmdp.data import (
    DataFormatError,
    Row,
    is_data_file,
    load_hf_dataset,
    read_rows,
    require_field,
)
from thoughtmdp.errors import DatasetFieldError, DependencyNotInstalled

FIXTURES = Path(__file__).parent / "fixtures" / "math"


def test_jsonl_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n   \n{"a": 3}\n', encoding="utf-8")
    rows = read_rows(path)
    assert rows == [Row(1, {"a": 1}), Row(3, {"a": 2}), Row(5, {"a": 3})]
    line, data = rows[1]
    assert (line, data) == (3, {"a": 2})


def test_fixture_files_read() -> None:
    rows = read_rows(FIXTURES / "numinamath.jsonl")
    assert len(rows) == 5
    assert {"problem", "solution", "source"} <= set(rows[0].data)
    assert [r.line for r in read_rows(FIXTURES / "acereason.jsonl")] == [1, 2, 3, 4]


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DatasetFieldError, match=r"broken\.jsonl, line 2: not valid JSON"):
        read_rows(path)


END_OF_LINE = (
    "Expecting ',' delimiter at the end of the line: is a closing brace, bracket or comma missing?"
)


def test_a_jsonl_line_missing_its_brace_is_reported_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"q": "1+1", "a": "2"}\n{"q": "2+2", "a": "4"\n{"q": "3"}\n')
    message = (
        f"{path}, line 2: not valid JSON ({END_OF_LINE}); each line of a JSONL file must hold "
        "one JSON object"
    )
    with pytest.raises(DatasetFieldError, match=f"^{re.escape(message)}$"):
        read_rows(path)


def test_a_json_list_missing_a_brace_names_the_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"q": "1+1", "a": "2"},\n  {"q": "2+2", "a": "4"\n\n  {"q": "3"}\n]\n')
    message = f"{path}, line 3: not valid JSON ({END_OF_LINE})"
    with pytest.raises(DatasetFieldError, match=f"^{re.escape(message)}$"):
        read_rows(path)
    path.write_text('[{"q": 1}, {"q" 2}]')
    message = f"{path}, line 1: not valid JSON (Expecting ':' delimiter at column 17)"
    with pytest.raises(DatasetFieldError, match=f"^{re.escape(message)}$"):
        read_rows(path)


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DatasetFieldError, match=r"list\.jsonl, line 2: expected a JSON object"):
        read_rows(path)


def test_json_list_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"q": "x"}, {"q": "y"}]), encoding="utf-8")
    assert read_rows(path) == [Row(1, {"q": "x"}), Row(2, {"q": "y"})]


def test_json_file_must_hold_a_list(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"data": []}), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"must hold a list of objects, got a dict"):
        read_rows(path)


def test_parquet_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"problem": ["1+1", "2+2"], "answer": ["2", "4"]}), path)
    assert read_rows(path) == [
        Row(1, {"problem": "1+1", "answer": "2"}),
        Row(2, {"problem": "2+2", "answer": "4"}),
    ]


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DependencyNotInstalled, match=r'pip install "thoughtmdp\[parquet\]"'):
        read_rows(tmp_path / "rows.parquet")


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"unsupported data file type '\.csv'"):
        read_rows(tmp_path / "rows.csv")


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_rows(tmp_path / "absent.jsonl")


def test_is_data_file() -> None:
    assert is_data_file("a/b.JSONL") and is_data_file("x.parquet") and is_data_file("x.json")
    assert not is_data_file("AI-MO/NuminaMath-CoT")


def test_require_field_names_file_line_field_and_present_keys() -> None:
    path = FIXTURES / "bad_row.jsonl"
    line, row = read_rows(path)[2]
    assert require_field(row, "answer", path, line) == "6"
    pattern = (
        r"bad_row\.jsonl, line 3: missing field 'problem'; "
        r"the row has fields \['answer', 'question'\]"
    )
    with pytest.raises(DatasetFieldError, match=pattern):
        require_field(row, "problem", path, line)


def test_require_field_rejects_null_and_appends_hint() -> None:
    with pytest.raises(DatasetFieldError, match=r"d\.jsonl, line 7: field 'answer' is null; use x"):
        require_field({"answer": None}, "answer", "d.jsonl", 7, hint="use x")


def test_load_hf_dataset_without_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DependencyNotInstalled, match=r"pip install datasets"):
        load_hf_dataset("AI-MO/NuminaMath-CoT", "train")


def test_load_hf_dataset_numbers_records(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def load_dataset(name: str, split: str) -> list[dict[str, Any]]:
        calls.append((name, split))
        return [{"problem": "p1"}, {"problem": "p2"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert load_hf_dataset("org/name", "test") == [
        Row(1, {"problem": "p1"}),
        Row(2, {"problem": "p2"}),
    ]
    assert calls == [("org/name", "test")]


def test_load_hf_dataset_error_propagates_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(name: str, split: str) -> None:
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(ConnectionError, match="hub unreachable") as caught:
        load_hf_dataset("org/name", "train")
    assert any("pass a local file path" in note for note in caught.value.__notes__)


def test_core_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, thoughtmdp.data, thoughtmdp.isolation, thoughtmdp.envs.math.task; "
        "heavy = {'torch', 'transformers', 'vllm', 'pyarrow', 'datasets', 'sympy', 'math_verify'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
