"""The rollout loop: sample thoughts from a backend until the env ends the episode."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.types import PrefixState, Thought, Trajectory

SEED_MODULUS = 2**31


async def rollout(
    env: ThoughtMDPEnv,
    backend: PolicyBackend,
    state: PrefixState | str,
    sampling: SamplingParams | None = None,
) -> Trajectory:
    """Sample thoughts from ``state`` until the env terminates or truncates.

    Args:
        env: An env with a tokenizer, used by this rollout alone.
        backend: The policy.
        state: A problem id (start at the prompt) or a prefix state to continue.
        sampling: Per-thought sampling; with a seed, thought ``h`` uses ``seed + h``.

    Returns:
        The trajectory: the start state, the sampled thoughts, reward and verifier info.

    Raises:
        ThoughtMDPError: If the env has no tokenizer (states must be token ids).
    """
    sampling = sampling or SamplingParams()
    options = {"problem": state} if isinstance(state, str) else {"prefix": state}
    _, info = env.reset(options=options)
    start, sampled = env.get_state(), list[Thought]()
    while True:
        if "prefix_token_ids" not in info:
            raise ThoughtMDPError("rollout needs an env with a tokenizer, to feed token ids")
        params = _within_budget(_seeded(sampling, start.h + len(sampled)), env.tokens_left())
        thought = await backend.sample_thought(info["prefix_token_ids"], params)
        _, reward, terminated, truncated, info = await _step(env, thought)
        sampled.append(thought)
        if terminated or truncated:
            verifier = info.get("verifier", {})
            return Trajectory(start, tuple(sampled), reward, terminated, truncated, verifier)


async def _step(
    env: ThoughtMDPEnv, thought: Thought
) -> tuple[Any, float, bool, bool, dict[str, Any]]:
    """Step the env; a final thought is verified on a thread so the loop keeps running."""
    if env.task.is_final(thought.text):
        return await asyncio.to_thread(env.step, thought)
    return env.step(thought)


def _within_budget(sampling: SamplingParams, tokens_left: int | None) -> SamplingParams:
    """Cap a thought at the response tokens left, so the last one cannot overshoot them."""
    if tokens_left is None or sampling.max_tokens <= tokens_left:
        return sampling
    return replace(sampling, max_tokens=tokens_left)


def _seeded(sampling: SamplingParams, h: int) -> SamplingParams:
    if sampling.seed is None:
        return sampling
    return replace(sampling, seed=(sampling.seed + h) % SEED_MODULUS)
