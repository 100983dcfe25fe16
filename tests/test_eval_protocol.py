"""The paper's evaluation protocol: one fixed item sample per task, shared by every row; the SD
over a row's adapters (its training seeds) and none for the base model; and no training
problem among the evaluation items."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.cli import main
from thoughtmdp.evaluation.benchmark import EvalResult, Method, draw_samples, evaluate
from thoughtmdp.evaluation.records import RecordStore
from thoughtmdp.evaluation.report import build_report, to_csv, to_json, to_markdown
from thoughtmdp.evaluation.suite import (
    Suite,
    SuiteError,
    load_suite,
    resolve_data,
    sample_problems,
    suite_for_tasks,
)
from thoughtmdp.settings.evaluation import EvalSettings

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
CONFIGS = Path(__file__).parent.parent / "thoughtmdp" / "configs"
CSQA_GOLDS = {  # the commonsenseqa fixture, in file order
    "Where would you keep milk": "B",
    "What do people use to cut paper": "C",
    "What falls from clouds": "B",
    "Where do fish live": "C",
}


def policies(tokenizer) -> ScriptedBackend:
    """Base answers B; adapters 1, 2, 3 (loaded in that order) answer B, A, and the gold."""
    backend: ScriptedBackend

    def respond(context: str, sampling) -> str:
        if "Answer yes or no." in context:
            return r"\boxed{no}"
        if backend.policy_version == 3:
            gold = next(g for q, g in CSQA_GOLDS.items() if q in context)
            return rf"\boxed{{{gold}}}"
        return rf"\boxed{{{'BBA'[backend.policy_version]}}}"

    backend = ScriptedBackend(tokenizer, respond)
    return backend


def run_suite(tokenizer, tmp_path: Path, suite: Suite, methods: tuple[Method, ...]) -> EvalResult:
    tasks = {e.name: e.build() for e in suite.tasks}
    store = RecordStore(tmp_path, {"model": "scripted"})
    backend = policies(tokenizer)
    return asyncio.run(evaluate(backend, suite, tasks, methods, EvalSettings(), store))


def paper_suite(*names: str, n: int, sample_seed: int = 0) -> Suite:
    suite = suite_for_tasks(list(names), load_suite("paper"))
    return resolve_data(dataclasses.replace(suite, n=n, sample_seed=sample_seed), FIXTURES)


# -- one item sample ------------------------------------------------------------------------


def test_base_and_every_adapter_are_scored_on_one_item_sample(tokenizer, tmp_path):
    suite = paper_suite("csqa", "stra", n=2, sample_seed=5)
    methods = (Method("base"), Method("srpo", ("s0", "s42", "s420")))
    result = run_suite(tokenizer, tmp_path, suite, methods)
    csqa = suite.tasks[0].build().problems("validation")
    expected = tuple(p.id for p in sample_problems(csqa, 2, seed=5))
    runs = [r for r in result.runs if r.task == "csqa"]
    assert [(r.method, r.adapter) for r in runs] == [
        ("base", None), ("srpo", "s0"), ("srpo", "s42"), ("srpo", "s420"),
    ]  # fmt: skip
    assert {r.problem_ids for r in runs} == {expected}  # one run per adapter, the same items
    assert len({r.problem_ids for r in result.runs if r.task == "stra"}) == 1
    assert result.graded == 4 * (2 + 2)


def test_the_sample_seed_picks_the_items():
    task = paper_suite("csqa", n=2).tasks[0].build()
    problems = task.problems("validation")
    drawn = {}
    for seed in (0, 1, 2):
        sample = draw_samples(paper_suite("csqa", n=2, sample_seed=seed), {"csqa": task})["csqa"]
        assert sample.problems == tuple(sample_problems(problems, 2, seed))
        drawn[seed] = sample.problems
    assert len(set(drawn.values())) > 1


# -- the SD -----------------------------------------------------------------------------------


def test_sd_is_over_the_adapters_and_the_base_row_has_none(tokenizer, tmp_path):
    suite = paper_suite("csqa", n=500)  # all 4 items: golds B C B C
    methods = (Method("base"), Method("srpo", ("s0", "s42", "s420")))
    report = build_report(run_suite(tokenizer, tmp_path, suite, methods), [1], 1, {})
    # base answers B: 2/4. s0 answers B: 0.5, s42 answers A: 0.0, s420 the gold: 1.0
    # mean 0.5; SD = sqrt((0^2 + 0.5^2 + 0.5^2) / (3 - 1)) = 0.5
    base, srpo = report.cells["pass@1", "base", "csqa"], report.cells["pass@1", "srpo", "csqa"]
    assert (base.runs, base.sd) == ((0.5,), None)
    assert srpo.runs == (0.5, 0.0, 1.0)
    assert srpo.sd == pytest.approx(0.5)
    assert to_markdown(report).splitlines()[4:6] == [
        "| base | **50.0** |",
        "| srpo | **50.0 ± 50.0** |",
    ]
    assert to_csv(report).splitlines()[1:] == [
        "pass@1,base,csqa,50.00,,1,4,True",
        "pass@1,srpo,csqa,50.00,50.00,3,4,True",
    ]
    cells = to_json(report)["results"]["pass@1"]
    assert (cells["base"]["csqa"]["sd"], cells["srpo"]["csqa"]["runs"]) == (None, [0.5, 0.0, 1.0])


# -- no training problem is evaluated ---------------------------------------------------------


def olympiad_rows(tmp_path: Path) -> Path:
    """Seven olympiad rows (q0..q5 and q1 again, spaced and cased differently) and one other."""
    rows = [{"source": "olympiads", "problem": f"Compute $q{i} + 1$.", "solution": r"$\boxed{1}$"}
            for i in range(6)]  # fmt: skip
    rows.insert(2, {"source": "cn_k12", "problem": "Compute $1+1$.", "solution": r"$\boxed{2}$"})
    rows.append(
        {"source": "olympiads", "problem": "  COMPUTE  $q1 + 1$. ", "solution": r"\boxed{1}"}
    )
    path = tmp_path / "numinamath_cot.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def oly_suite(tmp_path: Path, limit: int) -> Suite:
    olympiad_rows(tmp_path)
    suite = suite_for_tasks(["oly"], load_suite("paper"))
    entry = suite.tasks[0]
    assert entry.exclude_training is not None
    training = {**entry.exclude_training, "limit": limit}
    entry = dataclasses.replace(entry, exclude_training=training)
    return resolve_data(dataclasses.replace(suite, tasks=(entry,)), tmp_path)


def test_training_rows_are_left_out_of_the_olympiad_sample(tmp_path):
    suite = oly_suite(tmp_path, limit=3)  # the training run keeps the first 3: q0, q1, q2
    task = suite.tasks[0].build()
    assert len(task.problems("train")) == 7
    sample = draw_samples(suite, {"oly": task})["oly"]
    questions = [p.question for p in sample.problems]
    assert questions == ["Compute $q3 + 1$.", "Compute $q4 + 1$.", "Compute $q5 + 1$."]
    assert (sample.pool, sample.excluded, sample.training) == (7, 4, 3)
    report = build_report(EvalResult(samples={"oly": sample}), [1], 1, {})
    note = (
        "oly: 3 of 3 items (sample seed 0); 4 of the split's 7 rows excluded because their "
        "question is one of the 3 training problems (task=qa, data=numinamath_cot.jsonl, "
        "preset=numinamath_olympiads, split=train, limit=3)"
    )
    assert report.notes == (note,)
    assert to_markdown(report).endswith(f"- {note}\n")
    assert report.settings["items"]["oly"]["excluded"] == 4


def test_a_split_made_only_of_training_rows_is_refused(tmp_path):
    suite = oly_suite(tmp_path, limit=400)
    message = (
        "task 'oly': all 7 problems of its split 'train' are training problems (data="
        "numinamath_cot.jsonl, preset=numinamath_olympiads, split=train, limit=400), so none "
        "is left to evaluate; give it data beyond the training rows"
    )
    with pytest.raises(SuiteError, match=f"^{re.escape(message)}$"):
        draw_samples(suite, {"oly": suite.tasks[0].build()})


@pytest.mark.parametrize("config", ["numinamath-qwen2.5-14b.yaml", "numinamath-olmo3-7b.yaml"])
def test_the_paper_suite_excludes_what_the_paper_configs_train_on(config):
    actor = yaml.safe_load((CONFIGS / "paper" / config).read_text())["actor"]
    entry = load_suite("paper").entry("oly")
    assert actor["task"] == entry.task
    assert actor["task_options"] == entry.exclude_training


# -- old suites and command lines ----------------------------------------------------------------


def test_a_suite_with_item_seeds_is_refused_with_what_replaced_them(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("n: 2\nseeds: [0, 42, 420]\ntasks:\n  - {name: a, task: arith_chain}\n")
    message = (
        f"suite {path}: 'seeds' is no longer read: each task is scored on one fixed item "
        "sample, shared by every row, and a row's SD is taken over its adapters (one per "
        "training seed); replace 'seeds: [...]' with 'sample_seed: N' (default 0)"
    )
    with pytest.raises(SuiteError, match=f"^{re.escape(message)}$"):
        load_suite(path)


def test_the_seeds_option_is_refused_before_a_model_loads(tmp_path, capsys):
    args = ["eval", "--model", str(tmp_path / "none"), "--tasks", "csqa", "--data-dir",
            str(FIXTURES), "--seeds", "0,42,420", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert "--seeds is gone: every row is scored on one fixed item sample per task" in (
        capsys.readouterr().err
    )
