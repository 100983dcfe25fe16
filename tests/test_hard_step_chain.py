"""HardStepChain: one multiplication at a set step among easy steps, and its warm-start traces."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import thoughtmdp
from thoughtmdp import PrefixState, Thought, Trajectory
from thoughtmdp.agents.warmstart.data import noisy_chain, recipe_task
from thoughtmdp.envs.arith_chain import reference_thoughts
from thoughtmdp.envs.hard_step_chain import HardStepChainTask
from thoughtmdp.mdp.task import make_task
from thoughtmdp.settings.warmstart import WarmStartRecipe


def test_the_hard_step_multiplies_where_it_is_set_and_easy_steps_stay_small():
    task = HardStepChainTask(num_steps=8, hard_step=5, seed=0)
    for problem in task.problems("train")[:200]:
        ops, operands = problem.payload["ops"], problem.payload["operands"]
        assert problem.payload["hard_step"] == 5
        assert ops[4] == "*" and 3 <= operands[5] <= 9
        assert "*" not in ops[:4] + ops[5:]
        assert all(1 <= b <= 4 for k, b in enumerate(operands[1:]) if k != 4)
        assert min(problem.payload["results"][:4]) >= 1  # nothing multiplies 0
        running = operands[0]
        for op, b in zip(ops, operands[1:], strict=True):
            running = {"+": running + b, "-": running - b, "*": running * b}[op]
        assert int(problem.answer) == running


def test_without_a_hard_step_its_position_is_uniform():
    task = HardStepChainTask(num_steps=4, hard_step=None, seed=0, size=4000)
    counts = Counter(p.payload["hard_step"] for p in task.problems("train"))
    assert sorted(counts) == [1, 2, 3, 4]
    chi2 = sum((n - 1000) ** 2 / 1000 for n in counts.values())
    assert chi2 < 16.3  # 99.9 % quantile of chi-square with 3 degrees of freedom


def test_the_oracle_points_at_a_wrong_multiplication():
    task = HardStepChainTask(num_steps=3, hard_step=2, seed=0)
    problem = task.get_problem("train/0")
    right = reference_thoughts(problem)
    a, b = problem.payload["results"][0], problem.payload["operands"][2]
    wrong = [right[0], f"{a}*{b}={a * b + 1}", right[2]]
    trajectory = Trajectory(PrefixState(problem.id), tuple(map(Thought, wrong)))
    assert task.first_error_step(trajectory) == 2
    assert task.score(problem, right).reward == 1.0


def test_it_is_registered_as_a_task_and_a_gymnasium_env():
    assert isinstance(make_task("hard_step_chain", hard_step=3), HardStepChainTask)
    env = thoughtmdp.make("thoughtmdp/HardStepChain-v0", num_steps=4, hard_step=4, seed=0)
    observation, info = env.reset(seed=0)
    problem = env.unwrapped.task.get_problem(info["problem_id"])
    assert problem.question.endswith(f"*{problem.payload['operands'][-1]}")
    assert problem.question in observation["prompt"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hard_step": 9}, "hard_step must be in 1..num_steps (8), got 9"),
        ({"hard_operand_range": (5, 2)}, "hard_operand_range must satisfy 0 <= low <= high"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HardStepChainTask(**options)


def test_warm_start_traces_err_mostly_at_the_hard_step():
    recipe = WarmStartRecipe(
        task="hard_step_chain", num_steps=6, error_rate=0.05, hard_error_rate=0.5
    )
    task = recipe_task(recipe)
    rng = np.random.default_rng(0)
    first_errors = Counter()
    for problem in task.problems("train")[:1500]:
        thoughts = noisy_chain(problem, recipe.error_rate, recipe.hard_error_rate, rng)
        trajectory = Trajectory(PrefixState(problem.id), tuple(map(Thought, thoughts)))
        step = task.first_error_step(trajectory)
        if step is not None:
            first_errors["hard" if step == problem.payload["hard_step"] else "easy"] += 1
    # about 1500 * 0.5 * P(clean before) at the hard step against 1500 * 5 * 0.05 elsewhere
    assert first_errors["hard"] > 1.5 * first_errors["easy"] > 0


def test_an_arith_chain_recipe_draws_the_same_traces_as_before():
    problem = recipe_task(WarmStartRecipe()).get_problem("train/3")
    for seed in range(20):
        old = reference_thoughts(problem, 0.3, np.random.default_rng(seed))
        assert noisy_chain(problem, 0.3, 0.0, np.random.default_rng(seed)) == old


def test_a_recipe_names_a_known_task_and_keeps_earlier_fingerprints():
    with pytest.raises(thoughtmdp.ConfigError, match="^warmstart.task: expected one of"):
        WarmStartRecipe(task="qa")
    assert WarmStartRecipe().fingerprint() == "a78ba386aabae60c"  # cached models stay valid
    assert WarmStartRecipe(task="hard_step_chain").fingerprint() != "a78ba386aabae60c"
    options = WarmStartRecipe(task="hard_step_chain", num_steps=8).task_options()
    assert options["hard_step"] is None and options["num_steps"] == 8 and "operators" not in options
