"""The items a suite entry is scored on: one fixed sample, training problems left out.

:func:`draw_sample` draws each task's items once, with the suite's ``sample_seed``, and every
row of the report (the base model and each adapter) is scored on them. When the entry names
its training task (``exclude_training``), the problems of that task are removed from the
pool first, matched by :func:`question_key`, so that no training problem is ever an
evaluation item; the report says how many rows that removed, and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from thoughtmdp.evaluation.suite import SuiteEntry, SuiteError, sample_problems
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.types import Problem


def question_key(problem: Problem) -> str:
    """What identifies a problem across loads: its question, whitespace-normalised, case-folded.

    Ids count the rows a load keeps, so they differ between a training and an evaluation load
    of the same file; the question does not.

    >>> question_key(Problem("train/3", "  Find  $X$. ")) == question_key(Problem("0", "find $x$."))
    True
    """
    return " ".join(problem.question.split()).casefold()


@dataclass(frozen=True)
class ItemSample:
    """The items one task is scored on, shared by every row of the report.

    Attributes:
        problems: The drawn items, in split order.
        seed: The sample seed.
        pool: Problems in the evaluated split.
        excluded: Problems of the split left out because a training problem has the same
            question.
        training: Problems of the training task (0 without ``exclude_training``).
        training_task: What the training task was built from, for the report.
    """

    problems: tuple[Problem, ...]
    seed: int
    pool: int
    excluded: int = 0
    training: int = 0
    training_task: dict[str, Any] | None = None

    def note(self, name: str) -> str:
        """One line for the report: how many items were drawn from what, and what was left out.

        >>> ItemSample((), 0, 30).note("hmmt")
        'hmmt: 0 of 30 items (sample seed 0)'
        """
        text = f"{name}: {len(self.problems)} of {self.pool - self.excluded} items"
        text += f" (sample seed {self.seed})"
        if self.training_task is None:
            return text
        training = _describe(self.training_task)
        return (
            f"{text}; {self.excluded} of the split's {self.pool} rows excluded because their "
            f"question is one of the {self.training} training problems ({training})"
        )


def draw_sample(
    entry: SuiteEntry, task: VerifiableTask, split: str, n: int, seed: int
) -> ItemSample:
    """The one item sample of a suite entry: its training problems left out, then ``n`` drawn.

    Args:
        entry: The suite entry (its ``exclude_training`` names the training task).
        task: The entry's built task.
        split: The evaluated split.
        n: Items to draw (all of the pool when it has fewer).
        seed: The sample seed.

    Returns:
        The sample, with the counts the report shows.

    Raises:
        SuiteError: If every problem of the split is a training problem.
    """
    problems = list(task.problems(split))
    training = entry.build_training()
    if training is None:
        return ItemSample(tuple(sample_problems(problems, n, seed)), seed, len(problems))
    try:
        split_of = "train" if "train" in training.splits else training.splits[0]
        trained = training.problems(split_of)
    finally:
        training.close()
    seen = {question_key(p) for p in trained}
    kept = [p for p in problems if question_key(p) not in seen]
    if not kept:
        raise SuiteError(
            f"task {entry.name!r}: all {len(problems)} problems of its split {split!r} are "
            f"training problems ({_describe(entry.exclude_training or {})}), so none is left "
            "to evaluate; give it data beyond the training rows"
        )
    described = {"task": entry.task, **(entry.exclude_training or {})}
    return ItemSample(
        tuple(sample_problems(kept, n, seed)),
        seed,
        pool=len(problems),
        excluded=len(problems) - len(kept),
        training=len(trained),
        training_task=described,
    )


def _describe(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={os.path.basename(v) if k == 'data' else v}" for k, v in options.items())
