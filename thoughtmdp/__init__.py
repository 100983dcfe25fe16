"""thoughtmdp: RL post-training of language models with resets.

Importing this package is cheap: it loads numpy and gymnasium, never torch, transformers or
vLLM. Tasks live in :mod:`thoughtmdp.envs`, policy backends and actors in
:mod:`thoughtmdp.agents`, the learner in :mod:`thoughtmdp.learners`.
"""

from __future__ import annotations

from thoughtmdp.backend import Completion, PolicyBackend, SamplingParams
from thoughtmdp.episodes.advantages import group_advantages
from thoughtmdp.episodes.arrays import TrainingArrays, training_arrays
from thoughtmdp.episodes.metrics import episode_metrics
from thoughtmdp.episodes.presets import PRESETS, EpisodeConfig, episode_config
from thoughtmdp.episodes.reset_policies import (
    RESET_POLICIES,
    ResetContext,
    ResetPolicy,
    make_reset_policy,
    register_reset_policy,
)
from thoughtmdp.errors import (
    ConfigError,
    DatasetFieldError,
    DependencyNotInstalled,
    EpisodeFinishedError,
    InvalidPrefixError,
    StepOracleUnavailable,
    ThoughtMDPError,
    UnknownNameError,
    VerifierTimeout,
    VerifierUnavailable,
)
from thoughtmdp.mdp.env import ThoughtMDPEnv, make_task_env
from thoughtmdp.mdp.gym_ids import ENV_IDS, make, register_envs
from thoughtmdp.mdp.task import TASKS, VerifiableTask, make_task, register_task
from thoughtmdp.types import (
    Episode,
    Group,
    PrefixState,
    Problem,
    ResetDecision,
    ResetRecord,
    Score,
    Thought,
    Trajectory,
)

__version__ = "0.1.0"

register_envs()

__all__ = [
    "ENV_IDS",
    "PRESETS",
    "RESET_POLICIES",
    "TASKS",
    "Completion",
    "ConfigError",
    "DatasetFieldError",
    "DependencyNotInstalled",
    "Episode",
    "EpisodeConfig",
    "EpisodeFinishedError",
    "Group",
    "InvalidPrefixError",
    "PolicyBackend",
    "PrefixState",
    "Problem",
    "ResetContext",
    "ResetDecision",
    "ResetPolicy",
    "ResetRecord",
    "SamplingParams",
    "Score",
    "StepOracleUnavailable",
    "Thought",
    "ThoughtMDPEnv",
    "ThoughtMDPError",
    "TrainingArrays",
    "Trajectory",
    "UnknownNameError",
    "VerifiableTask",
    "VerifierTimeout",
    "VerifierUnavailable",
    "episode_config",
    "episode_metrics",
    "group_advantages",
    "make",
    "make_reset_policy",
    "make_task",
    "make_task_env",
    "register_reset_policy",
    "register_task",
    "training_arrays",
]
