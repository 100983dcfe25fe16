"""QATask and the benchmark presets: each preset loads its fixture in the release's layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gymnasium.utils.env_checker import check_env

from thoughtmdp import ThoughtMDPEnv, make_task
from thoughtmdp.envs.math.qa import QATask, parse_choices
from thoughtmdp.envs.math.qa_presets import PRESETS, get_preset
from thoughtmdp.errors import DatasetFieldError, UnknownNameError

FIXTURES = Path(__file__).parent / "fixtures" / "eval"

# preset -> (fixture, split, gold answers, metadata of the first problem)
EXPECTED = {
    "numinamath_olympiads": (
        "numinamath_cot.jsonl",
        "train",
        ["2", "2", r"\frac{5}{6}"],  # the cn_k12 row is filtered, the proof has no answer
        {"source": "olympiads", "line": 1},
    ),
    "hmmt_nov_2025": ("hmmt_nov_2025.jsonl", "train", ["9", r"\frac{\sqrt{3}}{4}", "6"], None),
    "math_level5": (
        "math_test.jsonl",
        "test",
        ["3", r"\frac34"],
        {"level": "Level 5", "type": "Algebra", "line": 2},
    ),
    "strategyqa": ("strategyqa.jsonl", "test", ["no", "yes", "no"], None),
    "acereason_math": ("acereason_math.jsonl", "train", ["24", "720", "5"], {"line": 1}),
    "sciknoweval_chemistry": ("sciknoweval.jsonl", "test", ["B", "B"], None),
    "sciknoweval_biology": ("sciknoweval.jsonl", "test", ["C"], None),  # open-ended row skipped
    "sciknoweval_materials": ("sciknoweval.jsonl", "test", ["B"], None),
    "sciknoweval_physics": ("sciknoweval.jsonl", "test", ["C", "A"], None),
    "commonsenseqa": ("commonsenseqa_validation.jsonl", "validation", ["B", "C", "B", "C"], None),
}


def test_every_preset_has_a_fixture():
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_preset_loads_its_fixture(preset):
    fixture, split, answers, meta = EXPECTED[preset]
    task = make_task("qa", data=str(FIXTURES / fixture), preset=preset)
    problems = task.problems(split)
    assert [p.answer for p in problems] == answers
    assert [p.id for p in problems] == [f"{split}/{i}" for i in range(len(answers))]
    assert task.answer_type == PRESETS[preset].answer_type
    if meta is not None:
        assert {k: problems[0].payload[k] for k in meta} == meta


def test_multiple_choice_question_shows_its_options_and_keeps_metadata():
    task = QATask(FIXTURES / "sciknoweval.jsonl", preset="sciknoweval_physics")
    problem = task.problems("test")[0]
    assert problem.question == (
        "What is the SI unit of force?\n\nA. Joule\nB. Watt\nC. Newton\nD. Pascal\n\n"
        "Answer with the letter of the correct option."
    )
    assert problem.payload["choices"] == (
        ("A", "Joule"),
        ("B", "Watt"),
        ("C", "Newton"),
        ("D", "Pascal"),
    )
    assert problem.payload["details.level"] == "L3"
    assert problem.payload["domain"] == "Physics"
    right = task.score(problem, ["The SI unit is named after Newton.", r"\boxed{C}"])
    wrong = task.score(problem, [r"\boxed{Joule}"])
    assert (right.reward, dict(right.info)) == (1.0, {"answer": "C", "gold": "C"})
    assert (wrong.reward, dict(wrong.info)) == (
        0.0,
        {"answer": "A", "gold": "C", "reason": "wrong answer"},
    )


def test_yes_no_question_is_told_how_to_answer():
    task = QATask(FIXTURES / "strategyqa.jsonl", preset="strategyqa")
    problem = task.problems("test")[1]
    assert problem.question == "Does ice float on liquid water?\n\nAnswer yes or no."
    assert problem.payload["qid"] == "a2"
    assert task.score(problem, [r"\boxed{Yes}"]).reward == 1.0
    assert task.score(problem, []).info["reason"] == "no answer found"


def test_missing_field_names_file_line_field_and_preset(tmp_path):
    path = tmp_path / "csqa.jsonl"
    path.write_text(json.dumps({"question": "q?", "choices": ["a", "b"], "label": "A"}) + "\n")
    message = (
        f"{path}, line 1: missing field 'answerKey'; the row has fields ['choices', 'label', "
        "'question']; preset 'commonsenseqa' expects " + PRESETS["commonsenseqa"].expects
    )
    with pytest.raises(DatasetFieldError, match=f"^{re.escape(message)}$"):
        QATask(path, preset="commonsenseqa")


def test_missing_filter_field_is_named(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps({"problem": "1+1", "solution": r"\boxed{2}"}) + "\n")
    with pytest.raises(DatasetFieldError, match=r"line 1: missing field 'level'; .*'math_level5'"):
        QATask(path, preset="math_level5")


def test_parquet_glob_and_json_list_layouts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIXTURES / "commonsenseqa_validation.jsonl").open()]
    for i in (0, 1):  # two shards, read in name order, as in a hub snapshot
        pq.write_table(pa.Table.from_pylist(rows[2 * i : 2 * i + 2]), tmp_path / f"v-{i}.parquet")
    task = QATask(str(tmp_path / "v-*.parquet"), preset="commonsenseqa")
    assert [p.answer for p in task.problems("validation")] == ["B", "C", "B", "C"]
    listed = tmp_path / "strategyqa.json"
    listed.write_text(json.dumps([{"question": "Is water wet?", "answer": True}]))
    assert QATask(listed, preset="strategyqa").problems("test")[0].answer == "yes"
    with pytest.raises(FileNotFoundError, match="no data files match"):
        QATask(str(tmp_path / "none-*.parquet"), preset="commonsenseqa")


def test_options_layouts():
    expected = parse_choices({"label": ["A", "B"], "text": ["x", "y"]}, "f", 1)
    assert parse_choices(["x", "y"], "f", 1) == expected
    assert parse_choices([{"label": "A", "text": "x"}, {"label": "B", "text": "y"}], "f", 1) == (
        expected
    )
    assert parse_choices({"A": "x", "B": "y"}, "f", 1) == expected
    with pytest.raises(DatasetFieldError, match="^f, line 3: options must be"):
        parse_choices("A) x B) y", "f", 3)


def test_explicit_fields_answer_type_and_filters(tmp_path):
    path = tmp_path / "own.jsonl"
    rows = [
        {"q": "Pick red", "opts": ["blue", "red"], "gold": "red", "meta": {"kind": "easy"}},
        {"q": "Pick blue", "opts": ["blue", "red"], "gold": "A", "meta": {"kind": "hard"}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = QATask(
        path,
        answer_type="multiple_choice",
        question_key="q",
        answer_key="gold",
        choices_key="opts",
        filters={"meta.kind": "EASY"},
    )
    assert [(p.question.splitlines()[0], p.answer) for p in task.problems("test")] == [
        ("Pick red", "B")
    ]


def test_errors_without_answer_type_or_usable_rows(tmp_path):
    with pytest.raises(ValueError, match="^QATask needs answer_type= "):
        QATask(FIXTURES / "strategyqa.jsonl")
    with pytest.raises(UnknownNameError, match="^unknown QA preset 'csqa'"):
        get_preset("csqa")
    path = tmp_path / "open.jsonl"
    path.write_text(json.dumps({"question": "Why?", "choices": [], "answerKey": ""}) + "\n")
    with pytest.raises(ValueError, match="holds no usable multiple_choice questions"):
        QATask(path, preset="commonsenseqa")


def test_qa_env_passes_check_env():
    task = QATask(FIXTURES / "commonsenseqa_validation.jsonl", preset="commonsenseqa")
    env = ThoughtMDPEnv(task, max_thoughts=3)
    check_env(env, skip_render_check=True)
    env.reset(options={"problem": 0})
    *_, reward, terminated, _, info = env.step(r"It stays cold in the \boxed{refrigerator}")
    assert (reward, terminated, info["verifier"]["answer"]) == (1.0, True, "B")
