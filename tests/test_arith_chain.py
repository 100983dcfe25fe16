"""ArithChain: deterministic problems, disjoint splits, scoring and the step oracle."""

from __future__ import annotations

import re

import numpy as np
import pytest

from thoughtmdp import PrefixState, Thought, Trajectory
from thoughtmdp.envs.arith_chain import ArithChainTask, next_reference_thought, reference_thoughts


@pytest.fixture(scope="module")
def task():
    return ArithChainTask(num_steps=3, seed=0, size=500, test_size=100)


def chain(problem_id, *texts, prefix=()):
    start = PrefixState(problem_id, None, tuple(Thought(t) for t in prefix))
    return Trajectory(start, tuple(Thought(t) for t in texts))


def test_problems_are_deterministic_and_match_their_results(task):
    again = ArithChainTask(num_steps=3, seed=0, size=500, test_size=100)
    assert task.problems("train")[:20] == again.problems("train")[:20]
    assert task.problems("train")[0] != ArithChainTask(num_steps=3, seed=1).problems("train")[0]
    for problem in task.problems("train")[:50]:
        assert eval(problem.question) == int(problem.answer) == problem.payload["results"][-1]
        assert len(problem.payload["ops"]) == 3


def test_splits_are_disjoint(task):
    train = {p.question for p in task.problems("train")}
    test = {p.question for p in task.problems("test")}
    assert not train & test
    assert len(task.problems("test")) == 100


def test_operators_and_operand_range_are_respected():
    task = ArithChainTask(num_steps=4, operand_range=(10, 12), operators="*", size=20)
    for problem in task.problems("train"):
        assert set(problem.payload["ops"]) == {"*"}
        assert all(10 <= x <= 12 for x in problem.payload["operands"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_steps": 0}, "num_steps must be at least 1, got 0"),
        ({"operand_range": (5, 1)}, "operand_range must satisfy 0 <= low <= high, got (5, 1)"),
        ({"operators": "+/"}, "operators must be a non-empty subset of '+-*', got '+/'"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ArithChainTask(**kwargs)


def test_score(task):
    problem = task.get_problem("train/0")  # 8+6+5+3 with seed 0 and 3 steps
    gold = problem.answer
    assert task.score(problem, ["x", f"so \\boxed{{{gold}}}"]).reward == 1.0
    assert task.score(problem, [f"\\boxed{{{int(gold) + 1}}}"]).reward == 0.0
    hedged = task.score(problem, [f"\\boxed{{{gold}}} or \\boxed{{{gold}}}"])
    assert hedged.reward == 0.0 and hedged.info["format_ok"] is False
    assert task.score(problem, []).reward == 0.0


def test_first_error_step_points_at_first_wrong_claim():
    task = ArithChainTask(num_steps=3, seed=0)
    problem = task.get_problem("train/0")
    assert problem.question == "8+6+5+3"
    assert (
        task.first_error_step(chain("train/0", "8+6=14", "14+5=19", "19+3=22 \\boxed{22}")) is None
    )
    assert task.first_error_step(chain("train/0", "8+6=15", "15+5=20", "20+3=23 \\boxed{23}")) == 1
    assert task.first_error_step(chain("train/0", "8+6=14", "14+5=18", "18+3=21 \\boxed{21}")) == 2
    assert task.first_error_step(chain("train/0", "8+6=14", "14+5=19", "19+3=22 \\boxed{23}")) == 3
    # indices count the prefix thoughts too
    assert task.first_error_step(chain("train/0", "14+5=18", prefix=["8+6=14"])) == 2
    # thoughts without claims are not errors
    assert task.first_error_step(chain("train/0", "let me add", "8+6=14")) is None


def test_reference_chain_is_correct_and_errors_are_found_by_the_oracle():
    task = ArithChainTask(num_steps=4, seed=2)
    rng = np.random.default_rng(0)
    found = 0
    for problem in task.problems("train")[:100]:
        clean = reference_thoughts(problem, rng=rng)
        assert task.score(problem, clean).reward == 1.0
        noisy = reference_thoughts(problem, error_rate=0.3, rng=rng)
        step = task.first_error_step(chain(problem.id, *noisy))
        reward = task.score(problem, noisy).reward
        # a wrong answer always has a wrong step; two slips can cancel, so not the converse
        if reward == 0.0:
            assert step is not None
        if step is None:
            assert reward == 1.0
        found += step is not None
    assert found > 50


def test_next_reference_thought_continues_from_last_claim():
    problem = ArithChainTask(num_steps=2, seed=0).get_problem("train/0")
    assert next_reference_thought(problem, []) == "8+6=14"
    assert next_reference_thought(problem, ["8+6=15"]) == "15+5=20 \\boxed{20}"
