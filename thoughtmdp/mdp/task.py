"""The interface every verifiable task implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from thoughtmdp.episodes.localization import LOCALIZER_TEMPLATE, render_localizer_prompt
from thoughtmdp.errors import StepOracleUnavailable, ThoughtMDPError, UnknownNameError
from thoughtmdp.mdp.boxed import has_boxed
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE, render_prompt
from thoughtmdp.registry import Registry
from thoughtmdp.types import Problem, Score, Trajectory


class VerifiableTask(ABC):
    r"""A source of problems with a verifiable final reward.

    Subclasses implement :meth:`problems` and :meth:`score`; they may override
    :meth:`is_final` (default: the thought holds a ``\boxed{}``), :meth:`render_prompt`,
    :meth:`render_localizer_prompt` and :meth:`first_error_step` (the credit-assignment
    oracle, when steps can be checked).

    Args:
        prompt_template: Rollout template with a ``{question}`` field.
        localizer_template: Self-localisation template with ``{question}``, ``{steps}`` and
            ``{num_steps}`` fields (the ``self`` reset policy asks it).
    """

    name: str = "task"
    """The registry name, for messages and records."""

    splits: tuple[str, ...] = ("train", "test")
    """The split names :meth:`problems` accepts; the first is the default."""

    has_step_oracle: bool = False
    """Whether :meth:`first_error_step` is implemented."""

    def __init__(
        self, prompt_template: str = ROLLOUT_TEMPLATE, localizer_template: str = LOCALIZER_TEMPLATE
    ) -> None:
        self.prompt_template = prompt_template
        self.localizer_template = localizer_template

    @abstractmethod
    def problems(self, split: str) -> Sequence[Problem]:
        """The problems of ``split``, in a fixed order."""

    @abstractmethod
    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        """Score a finished chain of thought texts; never raises for bad model output."""

    async def ascore(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        """:meth:`score` on a worker thread, so an asyncio loop keeps running."""
        return await asyncio.to_thread(self.score, problem, thoughts)

    def is_final(self, thought: str) -> bool:
        r"""Whether ``thought`` ends the chain (default: it holds a ``\boxed{}``)."""
        return has_boxed(thought)

    def render_prompt(self, problem: Problem) -> str:
        """The prompt text the model sees before its first thought."""
        return render_prompt(problem.question, self.prompt_template)

    def render_localizer_prompt(self, problem: Problem, thoughts: Sequence[str]) -> str:
        """The question asking the policy which of ``thoughts`` first went wrong."""
        return render_localizer_prompt(problem.question, thoughts, self.localizer_template)

    def first_error_step(self, trajectory: Trajectory) -> int | None:
        """1-based index of the first wrong thought of the whole chain; ``None`` if none.

        Raises:
            StepOracleUnavailable: If the task cannot check individual steps.
        """
        raise StepOracleUnavailable(f"task {self.name!r} has no step oracle")

    def close(self) -> None:
        """Release resources such as verifier worker processes (default: none)."""
        return None

    def get_problem(self, problem_id: str) -> Problem:
        """Look a problem up by id, in any split.

        Raises:
            UnknownNameError: If no split holds ``problem_id``.
        """
        try:
            return self._problem_index[problem_id]
        except KeyError:
            raise UnknownNameError(
                f"task {self.name!r} has no problem {problem_id!r} in splits {self.splits}"
            ) from None

    @cached_property
    def _problem_index(self) -> dict[str, Problem]:
        return {p.id: p for split in self.splits for p in self.problems(split)}


class OneSplitTask(VerifiableTask):
    """A task that loads one split of a data file when it is built.

    A subclass sets ``self.splits = (split,)`` and ``self.loaded`` (the problems, in order)
    in its ``__init__``.
    """

    loaded: Sequence[Problem] = ()
    """The problems of the split the task loaded."""

    def problems(self, split: str) -> Sequence[Problem]:
        """The problems loaded (the task's only split).

        Raises:
            ValueError: If ``split`` is not the split the task loaded.
        """
        if split not in self.splits:
            kind = type(self).__name__
            raise ValueError(
                f"this {kind} holds split {self.splits[0]!r}, not {split!r}; "
                f"load another split with {kind}(..., split=...)"
            )
        return self.loaded


TaskFactory = Callable[..., VerifiableTask]
TASKS: Registry[TaskFactory] = Registry("task", entry_point_group="thoughtmdp.tasks")
"""All registered tasks: built-ins, ``register_task`` calls and the ``thoughtmdp.tasks`` group."""


def register_task(name: str, target: TaskFactory | str | None = None) -> Any:
    """Register a task factory under ``name``; use as a call or as a class decorator.

    Args:
        name: The task name used by :func:`make_task` and the CLI.
        target: A :class:`VerifiableTask` subclass, a factory, or a lazy ``"module:attr"``.

    Returns:
        ``target``, or a decorator when ``target`` is omitted.

    >>> @register_task("always_right")
    ... class AlwaysRight(VerifiableTask):
    ...     name = "always_right"
    ...     def problems(self, split):
    ...         return [Problem(f"{split}/0", "What is 1+1?", "2", split)]
    ...     def score(self, problem, thoughts):
    ...         return Score(1.0)
    >>> make_task("always_right").problems("test")[0].id
    'test/0'
    """
    return TASKS.register(name, target)


def make_task(name: str, **kwargs: Any) -> VerifiableTask:
    """Build the task registered as ``name`` with ``kwargs``.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message lists the known tasks).
        ThoughtMDPError: If the factory does not return a :class:`VerifiableTask`.

    >>> make_task("arith_chain", num_steps=2, seed=0).problems("train")[0].question
    '8+6+5'
    """
    task = TASKS.get(name)(**kwargs)
    if not isinstance(task, VerifiableTask):
        raise ThoughtMDPError(f"task {name!r} built a {type(task).__name__}, not a VerifiableTask")
    return task


BUILTIN_TASKS = {
    "arith_chain": "thoughtmdp.envs.arith_chain:ArithChainTask",
    "hard_step_chain": "thoughtmdp.envs.hard_step_chain:HardStepChainTask",
    "math": "thoughtmdp.envs.math.task:MathTask",
    "reasoning_gym": "thoughtmdp.envs.reasoning_gym_task:ReasoningGymTask",
    "livecodebench": "thoughtmdp.envs.livecodebench.task:LiveCodeBenchTask",
    "qa": "thoughtmdp.envs.math.qa:QATask",
}
for _name, _target in BUILTIN_TASKS.items():
    register_task(_name, _target)


def describe_tasks() -> list[str]:
    """One line per registered task: its name and the first line of its docstring."""
    lines = []
    width = max(len(name) for name in TASKS.names())
    for name in TASKS.names():
        try:
            doc = (TASKS.get(name).__doc__ or "").strip().splitlines()
            summary = doc[0] if doc else ""
        except Exception as exc:  # a broken third-party entry must not hide the others
            summary = f"(cannot be loaded: {type(exc).__name__}: {exc})"
        lines.append(f"{name:<{width}}  {summary}")
    return lines
