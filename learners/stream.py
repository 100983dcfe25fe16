"""From the episode stream to a step's batch: intake checks and the staleness rule (no torch).

Intake checks the invariants :func:`~thoughtmdp.episodes.arrays.training_arrays` and the
shared-prefix forward rely on, without padding anything (:func:`check_episode`); an episode
the learner cannot train on is logged, counted and dropped.

An episode is *stale* when its oldest thought was sampled more than ``max_lag`` versions
before the learner's current one. Stale episodes are skipped, or kept and reweighted by the
loss's truncated importance weights; either way they are counted. An episode older than
``oldest_version`` (set by a resumed learner) is always skipped and counted as stale.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.types import Episode, PrefixState, Thought, TokenIds

logger = logging.getLogger(__name__)
POLL_S = 0.5


class StopRequested(ThoughtMDPError):
    """The learner was asked to stop while it waited for a step's episodes."""


class EpisodeSource(Protocol):
    """Where episodes come from (an ``EpisodeReceiver``, or a queue in tests)."""

    def get(self, timeout: float | None = None) -> tuple[str, Episode]:
        """The next ``(actor, episode)``; raises ``queue.Empty`` after ``timeout`` seconds."""
        ...


def episode_lag(episode: Episode, version: int) -> int:
    """Versions between the episode's oldest thought and ``version`` (0 if unversioned)."""
    versions = episode.policy_versions
    return version - versions[0] if versions else 0


@dataclass
class BatchAssembler:
    """Takes episodes from ``source`` until a step has ``size`` usable ones.

    Attributes:
        source: The episode stream.
        size: Episodes per step.
        max_lag: Staleness threshold in versions (``None``: nothing is stale).
        skip_stale: Drop stale episodes (else keep them for reweighting).
        consumed: Episodes taken so far from each actor (the stream position).
        stop: When set, :meth:`next_batch` gives up waiting (checked every ``POLL_S``).
        oldest_version: Episodes whose oldest thought has an older version are skipped.
    """

    source: EpisodeSource
    size: int
    max_lag: int | None = None
    skip_stale: bool = True
    consumed: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    oldest_version: int = 0

    def next_batch(self, version: int) -> tuple[list[Episode], dict[str, float]]:
        """The next step's episodes and the intake counts.

        Args:
            version: The learner's current adapter version.

        Returns:
            The episodes and ``staleness/*``, ``learner/rejected_episodes`` and
            ``learner/episodes/<actor>`` (episodes taken from each actor) metrics.

        Raises:
            StopRequested: If :attr:`stop` is set before the batch is complete; the episodes
                taken so far are dropped.
        """
        batch: list[Episode] = []
        counts = Counter({"skipped": 0, "reweighted": 0, "rejected": 0})
        worst = 0
        taken: Counter[str] = Counter()
        while len(batch) < self.size:
            if self.stop.is_set():
                raise StopRequested(f"stopped with {len(batch)} of {self.size} episodes")
            try:
                actor, episode = self.source.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self.consumed[actor] += 1
            taken[actor] += 1
            if not _trainable(episode, actor):
                counts["rejected"] += 1
                continue
            if _older_than(episode, self.oldest_version):
                counts["skipped"] += 1
                continue
            lag = episode_lag(episode, version)
            worst = max(worst, lag)
            if self.max_lag is not None and lag > self.max_lag:
                counts["skipped" if self.skip_stale else "reweighted"] += 1
                if self.skip_stale:
                    continue
            batch.append(episode)
        metrics = {
            "staleness/skipped": float(counts["skipped"]),
            "staleness/reweighted": float(counts["reweighted"]),
            "staleness/lag/max": float(worst),
            "learner/rejected_episodes": float(counts["rejected"]),
        }
        metrics.update({f"learner/episodes/{actor}": float(n) for actor, n in taken.items()})
        return batch, metrics


def _older_than(episode: Episode, version: int) -> bool:
    versions = episode.policy_versions
    return bool(versions) and versions[0] < version


def check_episode(episode: Episode) -> None:
    """Check that the learner can train on ``episode``, without padding it.

    ``Thought`` and ``Group`` check their length invariants (log-probabilities per token id,
    advantages per rollout) when they are built, so they are not repeated here.

    Raises:
        ThoughtMDPError: If the episode has no rollouts, a rollout lacks prompt or thought
            token ids, or a group's rollouts start from different tokens (the shared-prefix
            forward runs a group's start once). The message names the field.
    """
    if not any(g.trajectories for g in episode.groups):
        raise ThoughtMDPError(f"episode {episode.problem_id!r} has no rollouts")
    for g, group in enumerate(episode.groups):
        first: TokenIds | None = None
        for r, trajectory in enumerate(group.trajectories):
            where = f"episode {episode.problem_id!r}, group {g}, rollout {r}"
            start = _start_ids(trajectory.start, where)
            for k, thought in enumerate(trajectory.thoughts):
                _token_ids(thought, f"{where}: thoughts[{k}]")
            if first is None:
                first = start
            elif start != first:
                raise ThoughtMDPError(f"{where}: start token ids differ from rollout 0's")


def _start_ids(start: PrefixState, where: str) -> TokenIds:
    """The start state's token ids: the prompt's, then the prefix thoughts'."""
    if start.prompt_token_ids is None:
        raise ThoughtMDPError(f"{where}: start.prompt_token_ids is missing")
    prefix = [_token_ids(t, f"{where}: start.thoughts[{k}]") for k, t in enumerate(start.thoughts)]
    return start.prompt_token_ids + tuple(i for ids in prefix for i in ids)


def _token_ids(thought: Thought, where: str) -> TokenIds:
    if thought.token_ids is None:
        raise ThoughtMDPError(f"{where}.token_ids is missing")
    return thought.token_ids


def _trainable(episode: Episode, actor: str) -> bool:
    try:
        check_episode(episode)
    except ThoughtMDPError as exc:
        logger.error("dropped episode %r from %s: %s", episode.problem_id, actor, exc)
        return False
    return True
