"""Gymnasium ids of the built-in tasks, and :func:`make` with an error that lists them."""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium

from thoughtmdp.errors import UnknownNameError

ENV_IDS = {
    "thoughtmdp/ArithChain-v0": "arith_chain",
    "thoughtmdp/HardStepChain-v0": "hard_step_chain",
    "thoughtmdp/Math-v0": "math",
    "thoughtmdp/ReasoningGym-v0": "reasoning_gym",
    "thoughtmdp/LiveCodeBench-v0": "livecodebench",
}
"""Gymnasium ids registered on import, with the task each one wraps."""


def register_envs() -> None:
    """Register :data:`ENV_IDS` with Gymnasium (idempotent)."""
    for env_id, task in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                env_id, entry_point="thoughtmdp.mdp.env:make_task_env", kwargs={"task": task}
            )


def make(env_id: str, **kwargs: Any) -> gymnasium.Env[Any, Any]:
    """:func:`gymnasium.make` for ``thoughtmdp/...`` ids, with an error listing the known ids.

    Args:
        env_id: A registered id such as ``"thoughtmdp/ArithChain-v0"``.
        **kwargs: Env and task options (``num_steps``, ``max_thoughts``, ``tokenizer``, ...).

    Raises:
        UnknownNameError: If ``env_id`` is not registered.

    >>> env = make("thoughtmdp/ArithChain-v0", num_steps=2)
    >>> env.unwrapped.task.num_steps
    2
    """
    known = sorted(i for i in gymnasium.registry if i.startswith("thoughtmdp/"))
    if env_id not in gymnasium.registry:
        close = difflib.get_close_matches(env_id, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown env id {env_id!r}.{hint} Known ids: {', '.join(known)}")
    return gymnasium.make(env_id, **kwargs)
