r"""Supervised examples of the warm start: ArithChain traces and localisation questions.

An example is a ``(prompt, target)`` pair of texts; only the target carries loss. A trace's
target is its thoughts, each closed by ``</thought>``, exactly as a rollout samples them. A
localisation example's prompt is the task's localiser prompt for a failed chain; its target
redoes the steps correctly, numbered, each followed by the result the chain claimed, up to
the first one that differs, then names it: `` 1: 8+6=14 (14) 2: 14+5=19 (20) \boxed{2}``
and the end token. Checking by redoing is the skill the traces teach, and the copied claim
puts the two numbers side by side, so the localiser learns far faster than from the bare
answer; it stays imperfect exactly where the policy's arithmetic is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from thoughtmdp.envs.arith_chain import (
    CLAIM,
    ArithChainTask,
    next_reference_thought,
    reference_thoughts,
)
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.mdp.task import make_task
from thoughtmdp.settings.warmstart import WarmStartRecipe
from thoughtmdp.types import PrefixState, Problem, Thought, Trajectory

Example = tuple[str, str]
MAX_DRAWS = 1000  # a failed chain needs one mistake; this many draws without one is a bug


def recipe_task(recipe: WarmStartRecipe, size: int = 10_000) -> ArithChainTask:
    """The task of a recipe (``size`` train problems)."""
    task = make_task(recipe.task, **recipe.task_options(), seed=recipe.seed, size=size)
    assert isinstance(task, ArithChainTask)
    return task


def trace_example(
    task: ArithChainTask, problem: Problem, recipe: WarmStartRecipe, rng: np.random.Generator
) -> Example:
    """A rollout prompt and a reference chain with the recipe's mistakes."""
    thoughts = noisy_chain(problem, recipe.error_rate, recipe.hard_error_rate, rng)
    return task.render_prompt(problem), "".join(t + THOUGHT_DELIMITER for t in thoughts)


def noisy_chain(
    problem: Problem, error_rate: float, hard_error_rate: float, rng: np.random.Generator
) -> list[str]:
    """A reference chain: its steps err at ``error_rate``, its hard step at ``hard_error_rate``.

    For a problem without a hard step this is :func:`reference_thoughts`, draw for draw.
    """
    hard = problem.payload.get("hard_step")
    thoughts: list[str] = []
    while not thoughts or last_boxed(thoughts[-1]) is None:
        rate = hard_error_rate if len(thoughts) + 1 == hard else error_rate
        thoughts.append(next_reference_thought(problem, thoughts, rate, rng))
    return thoughts


def failed_chain(
    task: ArithChainTask, problem: Problem, error_rate: float, rng: np.random.Generator
) -> tuple[list[str], int]:
    """A reference chain that ends wrong, and its first wrong step (1-based).

    The first wrong step is drawn uniformly, so that its position alone tells nothing;
    later steps err at ``error_rate``. Chains whose mistakes cancel out are drawn again.

    Raises:
        RuntimeError: If ``MAX_DRAWS`` chains in a row came out right.
    """
    steps = len(problem.payload["ops"])
    for _ in range(MAX_DRAWS):
        first = int(rng.integers(1, steps + 1))
        thoughts: list[str] = []
        for k in range(1, steps + 1):
            rate = 0.0 if k < first else 1.0 if k == first else error_rate
            thoughts.append(next_reference_thought(problem, thoughts, rate, rng))
        if task.score(problem, thoughts).reward < 1:
            trajectory = Trajectory(PrefixState(problem.id), tuple(map(Thought, thoughts)))
            assert task.first_error_step(trajectory) == first
            return thoughts, first
    raise RuntimeError(f"no failed chain in {MAX_DRAWS} draws of {problem.id}")


def localization_example(
    task: ArithChainTask,
    problem: Problem,
    error_rate: float,
    rng: np.random.Generator,
    end_token: str,
) -> Example:
    r"""The localiser prompt of a failed chain, and the checked steps up to `` \boxed{k}``."""
    thoughts, step = failed_chain(task, problem, error_rate, rng)
    correct = [t.split(" \\boxed")[0] for t in reference_thoughts(problem)[:step]]
    shown = [CLAIM.findall(t)[0] for t in thoughts[:step]]
    redone = " ".join(
        f"{k}: {t} ({claim})"
        for k, (t, claim) in enumerate(zip(correct, shown, strict=True), start=1)
    )
    target = f" {redone} \\boxed{{{step}}}{end_token}"
    return task.render_localizer_prompt(problem, thoughts), target


def examples(
    recipe: WarmStartRecipe, task: ArithChainTask, end_token: str, start: int = 0
) -> Iterator[Example]:
    """The recipe's stream of training examples, from train problem ``start`` on, forever.

    The stream is a pure function of the recipe: the same seed gives the same examples.
    """
    rng = np.random.default_rng([recipe.seed, 1])
    problems = task.problems("train")
    index = start
    while True:
        problem = problems[index % len(problems)]
        if rng.random() < recipe.localization_share:
            yield localization_example(task, problem, recipe.error_rate, rng, end_token)
        else:
            yield trace_example(task, problem, recipe, rng)
        index += 1


def tokenizer_corpus(
    recipe: WarmStartRecipe, task: ArithChainTask, documents: int = 300
) -> Iterator[str]:
    """Texts the tokenizer is trained on: prompts, chains and localisation questions."""
    rng = np.random.default_rng([recipe.seed, 0])
    problems = task.problems("train")
    for index in range(documents):
        prompt, target = trace_example(task, problems[index], recipe, rng)
        yield prompt + target
        prompt, target = localization_example(task, problems[index], recipe.error_rate, rng, "")
        yield prompt + target
