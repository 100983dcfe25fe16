"""From episodes to the padded arrays the learner trains on (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.types import Episode, Thought, Trajectory


@dataclass(frozen=True)
class TrainingArrays:
    """One row per rollout, right-padded to the longest row.

    Invariants: every ``(B, T)`` array has the same shape. ``loss_mask`` is True exactly at the
    tokens the rollout sampled itself; the prompt, a reset group's prefix thoughts and padding
    are False. ``behaviour_logprobs`` is 0 and ``policy_versions`` is -1 where the mask is
    False (or where a backend reported no log-probability).

    Attributes:
        input_ids: Prompt, prefix and sampled token ids.  # (B, T) int64
        attention_mask: True on real tokens.  # (B, T) bool
        loss_mask: True on the tokens that carry loss.  # (B, T) bool
        advantages: The rollout's group-relative advantage.  # (B,) float32
        behaviour_logprobs: Log-probabilities under the sampling policy.  # (B, T) float32
        policy_versions: Policy version that sampled each token.  # (B, T) int32
        group_ids: Index of the rollout's group within the batch.  # (B,) int32
        prefix_lengths: Tokens before the first sampled one (shared within a group).  # (B,)
    """

    input_ids: NDArray[np.int64]
    attention_mask: NDArray[np.bool_]
    loss_mask: NDArray[np.bool_]
    advantages: NDArray[np.float32]
    behaviour_logprobs: NDArray[np.float32]
    policy_versions: NDArray[np.int32]
    group_ids: NDArray[np.int32]
    prefix_lengths: NDArray[np.int32]


def training_arrays(episodes: Sequence[Episode], pad_id: int = 0) -> TrainingArrays:
    """Stack every rollout of ``episodes``; zero-advantage rollouts stay in (they count in B).

    Raises:
        ThoughtMDPError: If a rollout lacks token ids (it was not sampled by a model).

    >>> from thoughtmdp.types import Group, PrefixState
    >>> start = PrefixState("p", (5, 6), (Thought("a", (7,)),))
    >>> rollout = Trajectory(start, (Thought("b", (8, 9), (-0.5, -0.25), 2),), reward=1.0)
    >>> episode = Episode("p", (Group("reset", (rollout,), (1.0,), reset_index=2),))
    >>> arrays = training_arrays([episode])
    >>> arrays.input_ids.tolist(), arrays.loss_mask.astype(int).tolist()
    ([[5, 6, 7, 8, 9]], [[0, 0, 0, 1, 1]])
    >>> arrays.behaviour_logprobs.tolist(), arrays.policy_versions.tolist()
    ([[0.0, 0.0, 0.0, -0.5, -0.25]], [[-1, -1, -1, 2, 2]])
    """
    rows = [
        (trajectory, advantage, group_id)
        for group_id, group in enumerate(g for e in episodes for g in e.groups)
        for trajectory, advantage in zip(group.trajectories, group.advantages, strict=True)
    ]
    if not rows:
        raise ThoughtMDPError("training_arrays needs at least one rollout")
    encoded = [_encode(trajectory) for trajectory, _, _ in rows]
    batch, width = len(rows), max(len(ids) for ids, *_ in encoded)
    input_ids = np.full((batch, width), pad_id, dtype=np.int64)
    attention = np.zeros((batch, width), dtype=np.bool_)
    loss_mask = np.zeros((batch, width), dtype=np.bool_)
    logprobs = np.zeros((batch, width), dtype=np.float32)
    versions = np.full((batch, width), -1, dtype=np.int32)
    prefix_lengths = np.zeros(batch, dtype=np.int32)
    for b, (ids, prefix_length, sampled_logprobs, sampled_versions) in enumerate(encoded):
        n = len(ids)
        input_ids[b, :n], attention[b, :n], loss_mask[b, prefix_length:n] = ids, True, True
        logprobs[b, prefix_length:n] = sampled_logprobs
        versions[b, prefix_length:n] = sampled_versions
        prefix_lengths[b] = prefix_length
    return TrainingArrays(
        input_ids,
        attention,
        loss_mask,
        np.array([a for _, a, _ in rows], dtype=np.float32),
        logprobs,
        versions,
        np.array([g for _, _, g in rows], dtype=np.int32),
        prefix_lengths,
    )


def _encode(trajectory: Trajectory) -> tuple[list[int], int, list[float], list[int]]:
    """(all token ids, length before the sampled part, sampled logprobs, sampled versions)."""
    start = trajectory.start
    if start.prompt_token_ids is None:
        raise ThoughtMDPError(f"rollout of {start.problem_id!r} has no prompt token ids")
    prefix = list(start.prompt_token_ids) + [i for t in start.thoughts for i in _ids(t)]
    sampled = [i for t in trajectory.thoughts for i in _ids(t)]
    logprobs = [lp for t in trajectory.thoughts for lp in _logprobs(t)]
    versions = [
        -1 if t.policy_version is None else t.policy_version
        for t in trajectory.thoughts
        for _ in _ids(t)
    ]
    return prefix + sampled, len(prefix), logprobs, versions


def _ids(thought: Thought) -> tuple[int, ...]:
    if thought.token_ids is None:
        raise ThoughtMDPError(f"thought {thought.text[:40]!r} has no token ids")
    return thought.token_ids


def _logprobs(thought: Thought) -> tuple[float, ...]:
    return thought.logprobs if thought.logprobs is not None else (0.0,) * len(_ids(thought))
