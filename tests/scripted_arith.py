"""Scripted ArithChain policies for episode tests (used with ScriptedBackend)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np

from thoughtmdp import ThoughtMDPEnv
from thoughtmdp.backend import SamplingParams
from thoughtmdp.envs.arith_chain import ArithChainTask, next_reference_thought
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER

QUESTION = re.compile(r"Q: (\S+)\n")


def split_context(context: str) -> tuple[str, list[str]]:
    """(question, thoughts so far) from a decoded ArithChain state."""
    match = list(QUESTION.finditer(context))[-1]
    thoughts = context[match.end() :].split(THOUGHT_DELIMITER)[:-1]
    return match.group(1), thoughts


class NoisySolver:
    """Continues the chain like the reference solver, slipping with ``error_rate``."""

    def __init__(self, task: ArithChainTask, error_rate: float) -> None:
        self.task, self.error_rate = task, error_rate
        self.by_question = {p.question: p for s in task.splits for p in task.problems(s)[:50]}

    def __call__(self, context: str, sampling: SamplingParams) -> str:
        question, thoughts = split_context(context)
        rng = np.random.default_rng(sampling.seed)
        return next_reference_thought(self.by_question[question], thoughts, self.error_rate, rng)


class OutcomeScript:
    """First thoughts of prompt rollouts right or wrong by a fixed list, in sample order.

    Each first thought carries its rollout's index as ``#i``; the rest of the chain follows
    the reference solver, so a wrong first step gives a wrong answer.
    """

    def __init__(self, task: ArithChainTask, outcomes: Sequence[int]) -> None:
        self.solver = NoisySolver(task, 0.0)
        self.outcomes = list(outcomes)
        self.counter = itertools.count()

    def __call__(self, context: str, sampling: SamplingParams) -> str:
        question, thoughts = split_context(context)
        thought = self.solver(context, sampling)
        if thoughts:
            return thought
        index = next(self.counter)
        right = self.outcomes[index] if index < len(self.outcomes) else 1
        if not right:
            value = int(thought.split("=")[1].split()[0])
            thought = thought.replace(f"={value}", f"={value + 1}")
        return f"#{index} {thought}"


def tag(trajectory) -> int:
    """The ``#i`` index of a prompt rollout."""
    return int(trajectory.all_thoughts[0].text.split()[0][1:])


def make_env_factory(task, tokenizer):
    return lambda: ThoughtMDPEnv(task, tokenizer=tokenizer)
