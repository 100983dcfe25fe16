"""The evaluation suite: suite files, item samples, runs with resume, reports, the CLI."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.cli import main
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.benchmark import EvalResult, Method, Run, evaluate
from thoughtmdp.evaluation.records import ItemRecord, RecordStore, ResumeMismatch
from thoughtmdp.evaluation.report import Cell, build_report, run_value, to_csv, to_markdown
from thoughtmdp.evaluation.suite import (
    Suite,
    SuiteError,
    load_suite,
    resolve_data,
    sample_problems,
    suite_for_tasks,
)
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.types import Problem

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
PAPER_COLUMNS = ["oly", "hmmt", "lvl5", "stra", "ace", "chem", "bio", "csqa", "mat", "phys"]

# -- suites -------------------------------------------------------------------------------


def test_paper_suite_lists_the_ten_benchmarks_and_loads_from_a_data_folder():
    suite = load_suite("paper")
    assert [e.name for e in suite.tasks] == PAPER_COLUMNS
    assert (suite.n, suite.sample_seed) == (500, 0)
    resolved = resolve_data(suite, FIXTURES)
    counts = {e.name: len(e.build().problems(e.build().splits[0])) for e in resolved.tasks}
    assert counts == dict(zip(PAPER_COLUMNS, [3, 3, 2, 3, 3, 2, 1, 4, 1, 2], strict=True))


def test_missing_data_file_names_task_and_file(tmp_path):
    suite = suite_for_tasks(["csqa"], load_suite("paper"))
    expected = tmp_path / "commonsenseqa_validation.jsonl"
    message = (
        f"task 'csqa' of suite 'paper': expected data file {expected}, which does not exist "
        "(CommonsenseQA rows: question, choices {label: [...], text: [...]}, answerKey (the "
        "public test split has no answers; use validation)); point --data-dir (or "
        "THOUGHTMDP_EVAL_DATA) at your copies"
    )
    with pytest.raises(SuiteError, match=f"^{re.escape(message)}$"):
        resolve_data(suite, tmp_path)


def test_data_folder_from_the_environment(monkeypatch):
    monkeypatch.setenv("THOUGHTMDP_EVAL_DATA", str(FIXTURES))
    entry = resolve_data(suite_for_tasks(["stra"], load_suite("paper"))).tasks[0]
    assert entry.data == str(FIXTURES / "strategyqa.jsonl")
    monkeypatch.delenv("THOUGHTMDP_EVAL_DATA")
    with pytest.raises(SuiteError, match="data path 'strategyqa.jsonl' is relative; point"):
        resolve_data(suite_for_tasks(["stra"], load_suite("paper")))


def test_suite_file_resolves_paths_against_its_folder(tmp_path):
    (tmp_path / "qa.jsonl").write_text((FIXTURES / "strategyqa.jsonl").read_text())
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nn: 2\nsample_seed: 1\ntasks:\n"
        "  - {name: sq, preset: strategyqa, data: qa.jsonl, n: 1}\n"
        "  - {name: hub, answer_type: yes_no, data: someone/some-dataset}\n"
        "  - {name: arith, task: arith_chain, options: {num_steps: 2}}\n"
    )
    suite = resolve_data(load_suite(path))
    assert [(e.name, e.data, suite.items(e)) for e in suite.tasks] == [
        ("sq", str(tmp_path / "qa.jsonl"), 1),
        ("hub", "someone/some-dataset", 2),  # a dataset name is kept as it is
        ("arith", None, 2),
    ]
    assert suite.tasks[2].build().num_steps == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks:\n  - {name: a, dat: x.jsonl}\n", "unknown key 'tasks[0].dat'. Did you mean"),
        ("tasks:\n  - {name: a}\n  - {name: a}\n", "tasks[1]: task name 'a' is used twice"),
        ("tasks:\n  - {name: a, task: nope}\n", "tasks[0]: unknown task 'nope'; registered:"),
        ("tasks:\n  - {task: qa}\n", "tasks[0]: 'name' is required"),
        ("n: 0\ntasks:\n  - {name: a}\n", "n must be at least 1"),
        ("tasks: [\n", "not valid YAML"),
    ],
)
def test_bad_suite_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=re.escape(message)):
        load_suite(path)


def test_tasks_come_from_the_suite_or_the_registry():
    with pytest.raises(SuiteError, match=r"^unknown task 'nope': not in suite 'paper' \(oly, "):
        suite_for_tasks(["nope"], load_suite("paper"))
    with pytest.raises(SuiteError, match="^no suite 'missing.yaml'"):
        load_suite("missing.yaml")


def test_item_samples_are_seeded_and_nested():
    problems = [Problem(f"p{i}", "q") for i in range(50)]
    first = sample_problems(problems, 10, seed=42)
    assert first == sample_problems(problems, 10, seed=42)
    assert first != sample_problems(problems, 10, seed=0)
    assert set(first) <= set(sample_problems(problems, 30, seed=42))
    assert len(sample_problems(problems, 500, seed=42)) == 50  # all when there are fewer


# -- reports ------------------------------------------------------------------------------


def record(problem_id: str, sample: int, passed: bool, task: str = "t") -> ItemRecord:
    return ItemRecord(
        "x", None, task, problem_id, sample, (), None, "", float(passed), passed, True, False
    )


def test_pass_at_k_is_the_unbiased_estimate_averaged_over_items():
    result = EvalResult(runs=[Run("x", None, "t", ("p0", "p1"))])
    outcomes = {"p0": [True, False, True, False], "p1": [False] * 4}
    for pid, flags in outcomes.items():
        for s, ok in enumerate(flags):
            result.records[("", "t", pid, s)] = record(pid, s, ok)
    # p0: n=4, c=2 -> pass@1 = 1/2, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@4 = 1; p1: 0
    values = [run_value(result, result.runs[0], 4, k) for k in (1, 2, 4)]
    assert values == pytest.approx([0.25, 5 / 12, 0.5])
    report = build_report(result, [1, 2], 4, {})
    assert report.metrics == ("pass@1", "pass@2")
    assert report.cells[("pass@2", "x", "t")].runs == pytest.approx((5 / 12,))


def test_cells_show_mean_and_sample_sd_in_percent():
    assert Cell((0.5, 1.0), 2).text() == "75.0 ± 35.4"  # SD with ddof=1
    assert Cell((0.3,), 2).text() == "30.0"  # a single run has no SD, like the Base rows
    assert Cell((0.3,), 2).sd is None


# -- runs ---------------------------------------------------------------------------------


def scripted(tokenizer) -> ScriptedBackend:
    """Base model answers B; adapter version 1 answers C, version 2 answers B; always 'no'."""
    backend: ScriptedBackend

    def respond(context: str, sampling) -> str:
        if "Answer yes or no." in context:
            return r"\boxed{no}"
        return rf"\boxed{{{'BCB'[backend.policy_version]}}}"

    backend = ScriptedBackend(tokenizer, respond)
    return backend


def scripted_suite() -> Suite:
    suite = suite_for_tasks(["csqa", "stra"], load_suite("paper"))
    return resolve_data(Suite("s", 2, 0, suite.tasks), FIXTURES)


def test_evaluate_scores_runs_and_resumes(tokenizer, tmp_path):
    suite = scripted_suite()
    tasks = {e.name: e.build() for e in suite.tasks}
    methods = (Method("m", ("a1", "a2")), Method("base"))  # the base model runs (and shows) first
    backend = scripted(tokenizer)
    store = RecordStore(tmp_path, {"model": "scripted"})
    result = asyncio.run(evaluate(backend, suite, tasks, methods, EvalSettings(), store))
    # csqa golds B C B C and strategyqa golds no yes no; sample seed 0 draws items 0 and 2 of
    # each, for all three policies: 3 x (2 + 2) rollouts
    assert (result.graded, result.resumed, backend.calls["sample_thought"]) == (12, 0, 12)
    report = build_report(result, [1], 1, {})
    assert to_markdown(report) == (
        "### pass@1 (%)\n\n| Method | csqa | stra |\n|---|---|---|\n"
        "| base | **100.0** | **100.0** |\n"
        "| m | 50.0 ± 70.7 | **100.0 ± 0.0** |\n\n"
        "Mean ± SD over each row's adapters (one per training seed); a single policy, such as "
        "the base model, has no SD. Items per task, the same for every row:\n\n"
        "- csqa: 2 of 4 items (sample seed 0)\n"
        "- stra: 2 of 3 items (sample seed 0)\n"
    )
    assert to_csv(report).splitlines()[:2] == [
        "metric,method,task,mean,sd,runs,items,best",
        "pass@1,base,csqa,100.00,,1,2,True",
    ]
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 12
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"method": "m", "adapter": "a1", "tas')  # a write cut short by a crash
    again = asyncio.run(evaluate(scripted(tokenizer), suite, tasks, methods, EvalSettings(), store))
    assert (again.graded, again.resumed) == (0, 12)
    assert build_report(again, [1], 1, {}) == report


def test_resume_refuses_other_settings(tmp_path):
    RecordStore(tmp_path, {"max_thoughts": 20, "tasks": {"csqa": {"data": "a.jsonl"}}})
    RecordStore(tmp_path, {"max_thoughts": 20, "tasks": {"stra": {"data": "b.jsonl"}}})
    message = (
        f"{tmp_path}: records were made with max_thoughts=20, this run has max_thoughts=2; "
        "use a new --out folder or the same setting"
    )
    with pytest.raises(ResumeMismatch, match=f"^{re.escape(message)}$"):
        RecordStore(tmp_path, {"max_thoughts": 2})
    with pytest.raises(ResumeMismatch, match="task 'csqa' was evaluated with"):
        RecordStore(tmp_path, {"tasks": {"csqa": {"data": "c.jsonl"}}})


def test_records_from_before_chat_templates_count_as_raw_text_prompts(tmp_path):
    for folder in (tmp_path / "a", tmp_path / "b"):  # written before the setting existed
        RecordStore(folder, {"max_thoughts": 20})
    RecordStore(tmp_path / "a", {"max_thoughts": 20, "chat_template": "none"})
    with pytest.raises(ResumeMismatch, match="made with chat_template='none', this run has "):
        RecordStore(tmp_path / "b", {"max_thoughts": 20, "chat_template": "auto"})


# -- the command --------------------------------------------------------------------------


def eval_args(out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "eval", "--model", str(model), "--tasks", "csqa,stra", "--data-dir", str(FIXTURES),
        "--n", "3", "--sample-seed", "3", "--max-thoughts", "2", "--max-tokens", "8",
        "--backend", "transformers", "--out", str(out), *extra,
    ]  # fmt: skip


def test_eval_command_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(eval_args(out, tiny_model_dir)) == 0
    printed = capsys.readouterr().out
    assert "backend: transformers" in printed
    assert "pass@1 (%)" in printed and "csqa" in printed
    assert {p.name for p in out.iterdir()} == {
        "records.jsonl", "eval_config.json", "results.md", "results.csv", "results.json",
    }  # fmt: skip
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    # sample seed 3 draws 3 of the 4 csqa items and all 3 strategyqa items
    assert len(records) == 6
    assert set(records[0]) >= {"problem_id", "thoughts", "answer", "reward", "passed", "reason"}
    assert all(1 <= len(r["thoughts"]) <= 2 for r in records)
    table = (out / "results.md").read_text().splitlines()
    assert table[2:4] == ["| Method | csqa | stra |", "|---|---|---|"]
    assert table[4].startswith("| base | **")
    summary = json.loads((out / "results.json").read_text())
    assert summary["results"]["pass@1"]["base"]["csqa"]["items"] == 3
    assert main(eval_args(out, tiny_model_dir)) == 0
    assert "graded 0 rollouts, resumed 6" in capsys.readouterr().out.replace("\n", " ")
    assert len((out / "records.jsonl").read_text().splitlines()) == 6


def test_eval_command_checks_arguments_before_loading_a_model(tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert main(eval_args(tmp_path, missing, "--samples", "2", "-k", "1,4")) == 2
    assert "each k must be in 1..--samples (2), got (1, 4)" in capsys.readouterr().err
    assert main([*eval_args(tmp_path, missing)[:-2], "--adapter", str(tmp_path)]) == 2
    assert "holds no adapter_config.json" in capsys.readouterr().err
    args = eval_args(tmp_path, missing)
    args[args.index("--data-dir") + 1] = str(tmp_path)
    assert main(args) == 2
    assert "expected data file" in capsys.readouterr().err
    assert main(eval_args(tmp_path, missing)) == 2
    assert capsys.readouterr().err == (
        f"thoughtmdp eval: error: --model: no such folder: {missing} "
        "(a local path; a hub model is named org/name)\n"
    )


def test_adapter_rows_are_named_and_checked(tmp_path):
    from thoughtmdp.evaluation.plan import parse_methods

    for name in ("s0", "s42", "grpo_s0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    rows = parse_methods(
        [f"srpo={tmp_path / 's0'},{tmp_path / 's42'}", str(tmp_path / "grpo_s0")], True
    )
    assert [(m.name, m.adapters) for m in rows] == [
        ("base", (None,)),
        ("srpo", (str(tmp_path / "s0"), str(tmp_path / "s42"))),
        ("grpo_s0", (str(tmp_path / "grpo_s0"),)),
    ]
    with pytest.raises(ThoughtMDPError, match="give each row a new name"):
        parse_methods([f"srpo={tmp_path / 's0'}", f"srpo={tmp_path / 's42'}"], False)
