"""The localisation audit on ArithChain: scripted numbers checked by hand, and the CLI."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from scripted_arith import split_context

from thoughtmdp import SamplingParams
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.cli import main
from thoughtmdp.envs.arith_chain import ArithChainTask, next_reference_thought
from thoughtmdp.envs.math.qa import QATask
from thoughtmdp.errors import StepOracleUnavailable
from thoughtmdp.evaluation.audit import AuditSettings, audit_localization
from thoughtmdp.evaluation.audit_report import audit_summary, write_audit
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.runs.stats import wilson_interval
from thoughtmdp.settings.evaluation import EvalSettings

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


class SlipOnce:
    """Solves ArithChain, but the first time a chain reaches step 2 of a problem, slips by +1.

    Suffixes resampled from a clean prefix (before step 2) therefore pass, and suffixes from
    a prefix holding the slip fail; ``solid`` problems never slip.
    """

    def __init__(self, task: ArithChainTask, solid: set[str]) -> None:
        self.by_question = {p.question: p for p in task.problems("test")[:10]}
        self.visits: Counter[str] = Counter()
        self.solid = solid

    def __call__(self, context: str, sampling: SamplingParams) -> str:
        question, thoughts = split_context(context)
        thought = next_reference_thought(self.by_question[question], thoughts)
        if len(thoughts) == 1 and question not in self.solid:
            self.visits[question] += 1
            if self.visits[question] == 1:
                value = int(thought.split("=")[1])
                thought = thought.replace(f"={value}", f"={value + 1}")
        return thought


def test_audit_numbers_on_scripted_chains(tokenizer, tmp_path):
    task = ArithChainTask(num_steps=3, seed=0)
    problems = list(task.problems("test")[:5])
    # the policy names step 1 (early: clean), 2 (exact), 3 (late: erroneous) or nothing
    answers = dict(zip([p.question for p in problems], ["1", "2", "3", "none"], strict=False))

    def localize(prompt: str) -> str:
        question = re.search(r"Problem: (\S+)\n", prompt).group(1)
        return rf"The first slip is here. \boxed{{{answers[question]}}}"

    backend = ScriptedBackend(tokenizer, SlipOnce(task, {problems[4].question}), localize)
    engine = EvalEngine(backend, task, EvalSettings(temperature=0.7, max_tokens=64))
    result = asyncio.run(audit_localization(engine, problems, AuditSettings(suffixes=2)))
    assert (result.chains, result.failed) == (5, 4)  # the solid problem's chain passes
    records = {r.problem_id: r for r in result.records}
    assert [(r.self_index, r.oracle_index, r.deviation, r.clean) for r in records.values()] == [
        (1, 2, -1, True),
        (2, 2, 0, True),
        (3, 2, 1, False),
        (None, 2, None, None),
    ]
    assert [r.suffix_rewards for r in records.values()] == [(1.0, 1.0), (1.0, 1.0), (0.0, 0.0), ()]
    summary = audit_summary(result)
    wilson_2_of_2 = pytest.approx([0.3424, 1.0], abs=1e-4)
    assert summary == {
        "chains": 5,
        "failed": 4,
        "localized": 3,
        "compared": 3,
        "no_oracle": 0,
        "parse_fail_rate": 0.25,
        "exact_match_rate": pytest.approx(1 / 3),
        "clean_prefix_rate": pytest.approx(2 / 3),
        "erroneous_prefix_rate": pytest.approx(1 / 3),
        "mean_seed_length": 3.0,
        "deviation_histogram": {"-1": 1, "0": 1, "1": 1},
        # h*/H_s = 1/3, 2/3, 3/3; a uniform reset puts 1/3 of each chain on each of them
        "position_histogram": {
            "self": [0, 0, 0, 1, 0, 0, 1, 0, 0, 1],
            "uniform": [0, 0, 0, 1.0, 0, 0, 1.0, 0, 0, 1.0],
        },
        "correction_by_deviation": {
            "-1": {"suffixes": 2, "successes": 2, "rate": 1.0, "ci95": wilson_2_of_2},
            "0": {"suffixes": 2, "successes": 2, "rate": 1.0, "ci95": wilson_2_of_2},
            "1": {
                "suffixes": 2,
                "successes": 0,
                "rate": 0.0,
                "ci95": pytest.approx([0, 0.6576], abs=1e-4),
            },
        },
        "correction": {
            "clean": {"resets": 2, "rate": 1.0, "pass_at_m": 1.0},
            "erroneous": {"resets": 1, "rate": 0.0, "pass_at_m": 0.0},
        },
    }
    paths = write_audit(result, summary, tmp_path)
    assert [p.name for p in paths] == ["audit.json", "audit.md", "audit_records.jsonl"]
    assert "| -1 | 1 | 100.0% | [34.2%, 100.0%] | 2 |" in paths[1].read_text()
    assert len(paths[2].read_text().splitlines()) == 4


def test_wilson_interval_matches_the_closed_form():
    low, high = wilson_interval(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_audit_needs_a_step_oracle(tokenizer):
    task = QATask(FIXTURES / "strategyqa.jsonl", preset="strategyqa")
    backend = ScriptedBackend(tokenizer, lambda context, sampling: "")
    with pytest.raises(StepOracleUnavailable, match="^task 'qa' has no step oracle"):
        asyncio.run(
            audit_localization(EvalEngine(backend, task, EvalSettings()), [], AuditSettings())
        )


def test_audit_command_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "audit"
    args = [
        "audit-localization", "--model", str(tiny_model_dir), "--task", "arith_chain",
        "--n", "2", "--max-thoughts", "2", "--max-tokens", "6", "--localizer-max-tokens", "6",
        "--suffixes", "1", "--backend", "transformers", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "audit.json").read_text())
    assert summary["chains"] == 2
    assert summary["failed"] == len((out / "audit_records.jsonl").read_text().splitlines())
    assert "Self-localisation vs oracle" in capsys.readouterr().out
    bad = [*args[:4], "stra", *args[5:]]
    assert main([*bad, "--data-dir", str(FIXTURES)]) == 2
    assert "task 'stra' has no step oracle" in capsys.readouterr().err
