"""thoughtmdp: RL post-training of language models with resets.

Importing this package is cheap: it loads numpy and gymnasium, never torch, transformers or
vLLM. Tasks live in :mod:`thoughtmdp.envs`, policy backends and actors in
:mod:`thoughtmdp.agents`, the learner in :mod:`thoughtmdp.learners`.
"""

from __future__ import annotations

from thoughtmdp.env import ThoughtMDPEnv, make_task_env
from thoughtmdp.errors import (
    DatasetFieldError,
    DependencyNotInstalled,
    EpisodeFinishedError,
    InvalidPrefixError,
    StepOracleUnavailable,
    ThoughtMDPError,
    UnknownNameError,
    VerifierTimeout,
)
from thoughtmdp.registration import ENV_IDS, make, register_envs
from thoughtmdp.task import TASKS, VerifiableTask, make_task, register_task
from thoughtmdp.types import PrefixState, Problem, Score, Thought, Trajectory

__version__ = "0.1.0"

register_envs()

__all__ = [
    "ENV_IDS",
    "TASKS",
    "DatasetFieldError",
    "DependencyNotInstalled",
    "EpisodeFinishedError",
    "InvalidPrefixError",
    "PrefixState",
    "Problem",
    "Score",
    "StepOracleUnavailable",
    "Thought",
    "ThoughtMDPEnv",
    "ThoughtMDPError",
    "Trajectory",
    "UnknownNameError",
    "VerifiableTask",
    "VerifierTimeout",
    "make",
    "make_task",
    "make_task_env",
    "register_task",
]
