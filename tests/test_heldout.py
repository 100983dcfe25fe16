"""The held-out evaluation of ``thoughtmdp train``: greedy pass rate and sampled pass@1."""

from __future__ import annotations

import asyncio
import json
import math
import re
import statistics
from dataclasses import replace

import pytest
from scripted_arith import NoisySolver, split_context

from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.errors import ConfigError
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.evaluation.heldout import HeldoutResult, SampledResult, evaluate_versions
from thoughtmdp.runs.files import read_heldout
from thoughtmdp.runs.stats import sampled_pass_at_1
from thoughtmdp.runs.summary import heldout_record, heldout_summary, summary_rows
from thoughtmdp.settings.actor import SamplingSettings
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import HeldoutSettings, TrainConfig, embedded_actor
from thoughtmdp.training.run import HeldoutEvaluator

ACTOR = replace(embedded_actor(), sampling=SamplingSettings(temperature=0.6, max_tokens=64))


class LoggingSolver(NoisySolver):
    """The noisy solver, noting the question, temperature and seed of every request."""

    def __init__(self, task: ArithChainTask) -> None:
        super().__init__(task, error_rate=0.3)
        self.requests: list[tuple[str, float, int | None]] = []

    def __call__(self, context, sampling):
        question, thoughts = split_context(context)
        if not thoughts:
            self.requests.append((question, sampling.temperature, sampling.seed))
        return super().__call__(context, sampling)


def evaluate(tokenizer, tmp_path, samples: int):
    task = ArithChainTask(num_steps=3, seed=0, test_size=8)
    problems = list(task.problems("test"))
    solver = LoggingSolver(task)
    backend = ScriptedBackend(tokenizer, solver)
    settings = HeldoutSettings(problems=8, samples=samples, concurrency=8)

    async def run():
        greedy = EvalEngine(backend, task, settings.eval_settings(ACTOR))
        sampled = None
        if samples:
            sampled_settings = settings.sampled_eval_settings(ACTOR)
            sampled = EvalEngine(backend, task, sampled_settings, slots=greedy.slots)
        adapters = [(0, None), (1, tmp_path / "v1")]
        return await evaluate_versions(greedy, problems, adapters, sampled=sampled)

    return asyncio.run(run()), solver.requests


def test_samples_gives_k_draws_per_problem_on_the_same_seeds_at_every_version(tokenizer, tmp_path):
    results, requests = evaluate(tokenizer, tmp_path, samples=4)
    before, after = results[0].sampled, results[1].sampled
    assert before is not None and after is not None
    passed = before.passed
    assert len(passed) == 8 and all(len(row) == 4 for row in passed)
    assert {x for row in passed for x in row} == {0, 1}
    assert any(len(set(row)) == 2 for row in passed)  # samples of one problem differ
    # the policy did not change: the same seeds give the same draws
    assert after.rewards == before.rewards
    sampled_requests = [r for r in requests if r[1] > 0]
    assert len(sampled_requests) == 2 * 8 * 4
    assert all(r[1] == 0.6 for r in sampled_requests)
    per_version = len(sampled_requests) // 2
    assert sorted(sampled_requests[:per_version]) == sorted(sampled_requests[per_version:])
    assert len({r[2] for r in sampled_requests}) == 8 * 4  # one seed per (problem, sample)

    record = heldout_record(results[0])
    means = [sum(row) / 4 for row in passed]
    assert record["sampled"] == {
        "samples": 4,
        "temperature": 0.6,
        "passed": passed,
        "pass_at_1": pytest.approx(sum(means) / 8),
        "se": pytest.approx(statistics.stdev(means) / math.sqrt(8)),
    }
    assert json.loads(json.dumps(record)) == record
    assert record["rewards"] == list(results[0].rewards)  # greedy fields as before
    assert record["pass_rate"] == results[0].pass_rate


def test_no_samples_evaluates_greedy_only(tokenizer, tmp_path):
    results, requests = evaluate(tokenizer, tmp_path, samples=0)
    assert all(result.sampled is None for result in results.values())
    assert "sampled" not in heldout_record(results[0])
    assert len(requests) == 2 * 8 and {r[1] for r in requests} == {0.0}


def test_sampled_pass_at_1_and_its_clustered_standard_error():
    pass_at_1, se = sampled_pass_at_1([[1, 0], [1, 1], [0, 0], [1, 0]])
    # per-problem means 0.5, 1, 0, 0.5: mean 0.5, sample variance 1/6
    assert pass_at_1 == 0.5
    assert se == pytest.approx(math.sqrt(1 / 6) / 2)
    assert math.isnan(sampled_pass_at_1([[True, False]])[1])
    with pytest.raises(ValueError, match="at least one problem"):
        sampled_pass_at_1([])


def result(rewards, sampled=None) -> HeldoutResult:
    ids = tuple(f"test-{i}" for i in range(len(rewards)))
    return HeldoutResult(ids, tuple(rewards), (True,) * len(rewards), 1.0, sampled)


def test_the_summary_shows_sampled_pass_at_1_and_reads_old_records():
    old = heldout_record(result([0.0, 1.0, 0.0, 1.0]))
    del old["pass_rate"]  # written before records held it
    sampled = SampledResult(((1.0, 0.0), (1.0, 1.0), (0.0, 0.0), (0.0, 1.0)), 0.6)
    new = heldout_record(result([1.0, 1.0, 0.0, 1.0], sampled))
    summary = heldout_summary({0: old, 4: new})
    assert "sampled" not in summary["before"]
    assert summary["after"]["sampled"] == {
        "pass_at_1": 0.5,
        "se": pytest.approx(math.sqrt(1 / 6) / 2),
        "samples": 2,
        "temperature": 0.6,
    }
    assert summary["gain"]["gain"] == 0.25
    rows = dict(summary_rows({"heldout": summary, "training": TRAINING, "resets": {}}))
    assert rows["held-out sampled pass@1 after (2 samples, T=0.6)"] == "50.0% ± 20.4% (SE)"
    assert not any("sampled" in label and "before" in label for label in rows)


TRAINING = {
    "steps": 0,
    "episodes": 0,
    "rollouts": 0,
    "episodes_per_s": 0.0,
    "time_split_s": {"update": 0.0},
}


class Console:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def print(self, text: str) -> None:
        self.lines.append(text)


def test_each_version_prints_and_writes_its_sampled_pass_at_1(tmp_path):
    console = Console()
    evaluator = HeldoutEvaluator(TrainConfig(run_dir=tmp_path), console)
    sampled = SampledResult(((1.0, 0.0), (1.0, 1.0)), 0.6)
    evaluator._record(0, result([0.0, 1.0]))
    evaluator._record(3, result([1.0, 1.0], sampled))
    assert console.lines[0] == "held-out pass rate, version 0: 50.0% of 2 problems (1.0s)"
    assert console.lines[1] == (
        "held-out pass rate, version 3: 100.0% of 2 problems; "
        "sampled pass@1 75.0% ± 25.0% (2 samples, T=0.6) (1.0s)"
    )
    written = read_heldout(tmp_path)
    assert "sampled" not in written[0]
    assert written[3]["sampled"]["passed"] == [[1, 0], [1, 1]]
    assert written[3]["sampled"]["pass_at_1"] == 0.75


def test_samples_is_a_setting_checked_like_the_others():
    assert HeldoutSettings().samples == 0
    settings = HeldoutSettings(samples=4, concurrency=8).sampled_eval_settings(embedded_actor())
    greedy = HeldoutSettings(concurrency=8).eval_settings(embedded_actor())
    assert settings == replace(greedy, temperature=0.6, top_p=1.0, samples=4)
    message = "heldout.samples: expected 0 or more, got -1"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load(TrainConfig, None, ["heldout.samples=-1"])
