"""Random episodes of the paper's shapes (1x4, GRPO, ...), for smoke runs and benchmarks.

They have the structure the learner relies on (a base group from the prompt, reset groups
that share a prefix of a failed seed chain, group-relative advantages, per-token versions)
and random token ids, so any model with a large enough vocabulary can train on them.
"""

from __future__ import annotations

import numpy as np

from thoughtmdp.episodes.advantages import group_advantages
from thoughtmdp.types import (
    Episode,
    Group,
    PrefixState,
    ResetDecision,
    ResetRecord,
    Thought,
    Trajectory,
)


def random_episode(
    rng: np.random.Generator,
    problem_id: str,
    vocab_size: int,
    *,
    prompt_tokens: int = 32,
    base_group_size: int = 4,
    suffix_group_size: int = 4,
    thoughts: int = 4,
    thought_tokens: int = 16,
    reset_index: int = 2,
    policy_version: int = 0,
) -> Episode:
    """A random episode: ``base_group_size`` rollouts from the prompt, one reset group.

    Rewards are fair coin flips (a fixed pattern guarantees non-zero advantages: half of
    each group succeeds), behaviour log-probabilities are ``-log(vocab_size)``.

    Args:
        rng: Source of token ids.
        problem_id: The episode's problem id.
        vocab_size: Token ids are drawn from ``1..vocab_size-1``.
        prompt_tokens: Length of the prompt.
        base_group_size: G1 (0: no base group).
        suffix_group_size: M (0: no reset group).
        thoughts: Thoughts per rollout (the seed chain's length ``H_s``).
        thought_tokens: Tokens per thought.
        reset_index: ``h*``: the reset group keeps the seed's first ``h* - 1`` thoughts.
        policy_version: Version stamped on every sampled thought.

    Returns:
        The episode.

    >>> e = random_episode(np.random.default_rng(0), "p", 100)
    >>> [(g.kind, len(g.trajectories)) for g in e.groups]
    [('base', 4), ('reset', 4)]
    """
    prompt = PrefixState(
        problem_id, tuple(int(t) for t in rng.integers(1, vocab_size, prompt_tokens))
    )
    logprob = -float(np.log(vocab_size))

    def chain(start: PrefixState, count: int, reward: float) -> Trajectory:
        sampled = tuple(
            Thought(
                f"t{i}",
                tuple(int(t) for t in rng.integers(1, vocab_size, thought_tokens)),
                (logprob,) * thought_tokens,
                policy_version,
            )
            for i in range(count)
        )
        return Trajectory(start, sampled, reward, terminated=True)

    groups, resets = [], []
    if base_group_size:
        base = [chain(prompt, thoughts, float(i % 2)) for i in range(base_group_size)]
        groups.append(_group("base", base))
    if suffix_group_size:
        seed_trajectory = chain(prompt, thoughts, 0.0)
        start = PrefixState(
            problem_id, prompt.prompt_token_ids, seed_trajectory.thoughts[: reset_index - 1]
        )
        suffixes = [
            chain(start, thoughts - reset_index + 1, float(i % 2)) for i in range(suffix_group_size)
        ]
        groups.append(_group("reset", suffixes, reset_index))
        resets.append(ResetRecord(seed_trajectory, ResetDecision(reset_index, "uniform")))
    return Episode(problem_id, tuple(groups), tuple(resets))


def _group(kind: str, trajectories: list[Trajectory], reset_index: int | None = None) -> Group:
    advantages = group_advantages([t.reward for t in trajectories])
    return Group(
        kind,  # type: ignore[arg-type]
        tuple(trajectories),
        tuple(float(a) for a in advantages),
        reset_index,
    )
