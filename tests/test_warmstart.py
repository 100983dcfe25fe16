"""The embedded policy: its training examples, the cache and the build report."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from thoughtmdp.agents.warmstart.data import (
    failed_chain,
    localization_example,
    recipe_task,
    trace_example,
)
from thoughtmdp.episodes.localization import parse_step_index
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.warmstart import WarmStartRecipe, model_folder
from thoughtmdp.types import PrefixState, Thought, Trajectory

RECIPE = WarmStartRecipe()


def test_a_trace_is_the_rollout_prompt_and_closed_thoughts():
    task = recipe_task(RECIPE)
    problem = task.get_problem("train/0")  # 8+6+5+3
    clean = WarmStartRecipe(error_rate=0.0)
    prompt, target = trace_example(task, problem, clean, np.random.default_rng(0))
    assert prompt == "Q: 8+6+5+3\n"
    assert target == "8+6=14</thought>14+5=19</thought>19+3=22 \\boxed{22}</thought>"


def test_a_localisation_answer_redoes_the_steps_up_to_the_first_mistake():
    task = recipe_task(RECIPE)
    problem = task.get_problem("train/0")
    rng = np.random.default_rng(0)
    prompt, target = localization_example(task, problem, 0.15, rng, "<E>")
    steps = prompt.split("\n")[1:-1]
    claims = [int(s.split("=")[1].split()[0]) for s in steps]
    first = parse_step_index(target, len(steps))[0]
    gold = list(problem.payload["results"])
    assert claims[: first - 1] == gold[: first - 1] and claims[first - 1] != gold[first - 1]
    assert target.startswith(" 1: 8+6=14 (") and target.endswith(f" \\boxed{{{first}}}<E>")
    assert prompt.endswith("First wrong step of 3:")


def test_the_first_wrong_step_of_a_localisation_chain_is_uniform():
    task = recipe_task(RECIPE)
    rng = np.random.default_rng(1)
    counts = Counter()
    for i in range(3000):
        problem = task.problems("train")[i % 500]
        thoughts, step = failed_chain(task, problem, 0.15, rng)
        trajectory = Trajectory(PrefixState(problem.id), tuple(map(Thought, thoughts)))
        assert task.first_error_step(trajectory) == step
        assert task.score(problem, thoughts).reward == 0
        counts[step] += 1
    expected = 1000
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in (1, 2, 3))
    assert chi2 < 13.8  # 99.9% quantile of chi-square with 2 degrees of freedom


def test_the_cache_folder_is_named_by_the_whole_recipe(monkeypatch, tmp_path):
    monkeypatch.setenv("THOUGHTMDP_CACHE", str(tmp_path))
    assert model_folder(RECIPE).parent == tmp_path / "warmstart"
    assert model_folder(RECIPE) == model_folder(WarmStartRecipe())
    assert model_folder(RECIPE) != model_folder(WarmStartRecipe(error_rate=0.2))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"error_rate": 1.5}, "warmstart.error_rate: expected 0..1, got 1.5"),
        ({"steps": 0}, "warmstart.steps: expected 1 or more, got 0"),
        (
            {"num_heads": 8},
            "warmstart.num_heads: hidden_size / num_heads must be a whole number >= 32 (vLLM's "
            "CPU attention), got 128 / 8",
        ),
    ],
)
def test_a_bad_recipe_names_the_field(changes, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        WarmStartRecipe(**changes)


@pytest.mark.slow
def test_a_build_is_cached_and_reported(monkeypatch, tmp_path):
    from thoughtmdp.agents.warmstart.build import ensure_warm_start

    monkeypatch.setenv("THOUGHTMDP_CACHE", str(tmp_path))
    recipe = WarmStartRecipe(steps=20, batch_size=16, eval_problems=20, vocab_size=300)
    steps = []
    first = ensure_warm_start(recipe, lambda step, loss: steps.append(step))
    assert first.built and steps == list(range(1, 21))
    assert {"config.json", "recipe.json", "report.json", "tokenizer.json"} <= {
        p.name for p in first.folder.iterdir()
    }
    report = first.report
    assert report["heldout"]["problems"] == 20
    assert 0 <= report["heldout"]["pass_rate"] <= 1
    assert "uniform_baseline" in report["localization"]
    second = ensure_warm_start(recipe)
    assert not second.built and second.folder == first.folder and second.report == report
    assert not list(first.folder.parent.glob(".*.tmp"))
