"""One evaluation engine: the held-out pass rate, the eval suite and the audit roll out alike."""

from __future__ import annotations

import argparse
import asyncio
import re

import pytest
from scripted_arith import NoisySolver

from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.errors import ConfigError
from thoughtmdp.evaluation.audit import AuditSettings, audit_localization
from thoughtmdp.evaluation.benchmark import Method, evaluate
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.evaluation.heldout import heldout_pass_rate
from thoughtmdp.evaluation.records import RecordStore
from thoughtmdp.evaluation.suite import Suite, SuiteEntry
from thoughtmdp.settings.evaluation import EvalSettings, add_eval_arguments, eval_settings_from_args
from thoughtmdp.settings.train import HeldoutSettings, embedded_actor

SETTINGS = EvalSettings(temperature=0.7, sampling_seed=5)


def heldout_rewards(backend, task, problems, settings=SETTINGS) -> tuple[float, ...]:
    async def run():
        engine = EvalEngine(backend, task, settings, name="arith")
        return await heldout_pass_rate(engine, problems)

    return asyncio.run(run()).rewards


def test_heldout_eval_and_audit_roll_out_the_same_chains(tokenizer, tmp_path):
    task = ArithChainTask(num_steps=3, seed=0, test_size=12)
    problems = list(task.problems("test"))
    # the solver slips by the request seed, so equal rewards mean equal seeds and chains
    backend = ScriptedBackend(tokenizer, NoisySolver(task, error_rate=0.3))
    heldout = heldout_rewards(backend, task, problems)

    suite = Suite("s", n=12, tasks=(SuiteEntry(name="arith", task="arith_chain"),))
    store = RecordStore(tmp_path, {})
    result = asyncio.run(
        evaluate(backend, suite, {"arith": task}, [Method("base")], SETTINGS, store)
    )
    suite_rewards = tuple(result.records[("", "arith", p.id, 0)].reward for p in problems)

    async def audit():
        engine = EvalEngine(backend, task, SETTINGS, name="arith")
        return await audit_localization(engine, problems, AuditSettings(suffixes=0))

    audited = asyncio.run(audit())

    assert heldout == suite_rewards
    assert 0 < sum(heldout) < len(problems)  # some chains slipped, some did not
    failed = [p.id for p, reward in zip(problems, heldout, strict=True) if reward < 1]
    assert [r.problem_id for r in audited.records] == failed
    assert (audited.chains, audited.failed) == (12, len(failed))
    reseeded = EvalSettings(temperature=0.7, sampling_seed=6)
    assert heldout_rewards(backend, task, problems, reseeded) != heldout


def test_request_seeds_hash_the_base_seed_the_scope_the_problem_and_the_sample():
    task = ArithChainTask(test_size=4)
    scoped = EvalEngine(None, task, SETTINGS, name="arith")
    plain = EvalEngine(None, task, SETTINGS)
    assert scoped.split == "test"
    assert scoped.request_seed("test-0", 0) == scoped.request_seed("test-0", 0)
    seeds = {
        scoped.request_seed("test-0", 0),
        scoped.request_seed("test-0", 1),
        scoped.request_seed("test-1", 0),
        plain.request_seed("test-0", 0),
    }
    assert len(seeds) == 4
    assert all(0 <= s < 2**31 for s in seeds)


def test_command_options_map_onto_the_settings():
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser, EvalSettings(temperature=0.7))
    args = parser.parse_args(["--max-tokens", "8", "--samples", "2", "--top-p", "0.9"])
    settings = eval_settings_from_args(args, EvalSettings(temperature=0.7), sampling_seed=3)
    assert settings == EvalSettings(
        temperature=0.7, top_p=0.9, max_tokens=8, samples=2, sampling_seed=3
    )
    bad = parser.parse_args(["--max-tokens", "0"])
    message = "--max-tokens: expected 1 or more, got 0"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        eval_settings_from_args(bad, EvalSettings())


def test_heldout_rolls_out_greedy_chains_capped_like_the_actors():
    settings = HeldoutSettings(concurrency=8).eval_settings(embedded_actor())
    assert settings == EvalSettings(
        temperature=0.0, top_p=1.0, max_tokens=24, max_thoughts=6, max_total_tokens=256,
        concurrency=8,
    )  # fmt: skip
