"""A step's padded batch and which rollouts each rank runs in which forward pass (numpy only).

A step's episodes are padded once (:class:`PaddedBatch`); mini-batches and single episodes
are row slices of that padding, never padded again.

A mini-batch's rollouts are planned into micro-batches. Rollouts with a zero advantage are
left out of every forward pass (they add nothing to the loss or its gradient) but still count
in the loss's normaliser. Whole groups go to ranks round-robin, so a group's shared prefix
stays on one rank. Every rank ends up with the same passes in the same order: ZeRO-3
gathers weights at every module call, so a rank with less work pads with weight-0
micro-batches of the same kind (shared-prefix or plain) as the others'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from thoughtmdp.episodes.arrays import TrainingArrays, training_arrays
from thoughtmdp.types import Episode


@dataclass(frozen=True)
class MicroBatch:
    """Rows of a mini-batch that run in one forward pass.

    Attributes:
        rows: Row indices into the mini-batch's arrays.
        width: Columns needed (the longest row's length).
        first_target: First column whose log-probability is needed (the shortest prefix).
        shared: The rows form one group whose first ``first_target`` tokens are equal, run
            with the shared-prefix forward.
        weight: 1, or 0 for a padding micro-batch that only keeps the ranks in step.
    """

    rows: tuple[int, ...]
    width: int
    first_target: int
    shared: bool = False
    weight: float = 1.0


@dataclass(frozen=True, eq=False)
class PaddedBatch:
    """Episodes and their training arrays, padded once.

    Invariants: ``arrays`` equals ``training_arrays(episodes, pad_id)`` up to right padding:
    its rows are the episodes' rollouts in order, its ``group_ids`` count the episodes' groups
    from 0.

    Attributes:
        episodes: The episodes.
        arrays: Their rollouts, one row each.
    """

    episodes: tuple[Episode, ...]
    arrays: TrainingArrays

    @classmethod
    def pad(cls, episodes: Sequence[Episode], pad_id: int) -> PaddedBatch:
        """Pad ``episodes`` with :func:`training_arrays` (the only call in the learner).

        Raises:
            ThoughtMDPError: As :func:`training_arrays` does.
        """
        return cls(tuple(episodes), training_arrays(episodes, pad_id))

    def select(self, start: int, stop: int) -> PaddedBatch:
        """Episodes ``start:stop`` with their rows, cut to their own longest row.

        The arrays equal ``training_arrays(self.episodes[start:stop])``; they are views.
        """
        if (start, stop) == (0, len(self.episodes)):
            return self
        first_row, first_group = _counts(self.episodes[:start])
        rows = slice(first_row, first_row + _counts(self.episodes[start:stop])[0])
        a = self.arrays
        width = int(a.attention_mask[rows].sum(axis=1).max(initial=0))
        cut = (rows, slice(0, width))
        arrays = TrainingArrays(
            a.input_ids[cut],
            a.attention_mask[cut],
            a.loss_mask[cut],
            a.advantages[rows],
            a.behaviour_logprobs[cut],
            a.policy_versions[cut],
            a.group_ids[rows] - first_group,
            a.prefix_lengths[rows],
        )
        return PaddedBatch(self.episodes[start:stop], arrays)

    def minibatches(self, size: int) -> list[PaddedBatch]:
        """Consecutive chunks of ``size`` episodes (the last may be shorter)."""
        count = len(self.episodes)
        return [self.select(i, min(i + size, count)) for i in range(0, count, size)]


def _counts(episodes: Sequence[Episode]) -> tuple[int, int]:
    """(rollouts, groups) of ``episodes``."""
    groups = [g for e in episodes for g in e.groups]
    return sum(len(g.trajectories) for g in groups), len(groups)


def plan_microbatches(
    arrays: TrainingArrays, world_size: int, rows_per_micro: int, shared_prefix: bool
) -> list[list[MicroBatch]]:
    """The micro-batches of every rank, all ranks with the same count.

    Args:
        arrays: The mini-batch.
        world_size: Number of ranks.
        rows_per_micro: Most rollouts in one forward pass.
        shared_prefix: Plan one shared-prefix pass per group (split if larger than
            ``rows_per_micro``) instead of plain chunks.

    Returns:
        One list of micro-batches per rank: the same count, and the same kind (shared-prefix
        or plain) at each position, on every rank.
    """
    lengths = arrays.attention_mask.sum(axis=1)  # (B,)
    active = arrays.advantages != 0  # (B,)
    groups = [np.flatnonzero((arrays.group_ids == g) & active) for g in np.unique(arrays.group_ids)]
    groups = [g for g in groups if g.size]
    plans: list[list[MicroBatch]] = []
    for rank in range(world_size):
        mine = groups[rank::world_size]
        if shared_prefix:
            plan = [m for g in mine for m in _chunks(g, rows_per_micro, arrays, lengths, True)]
        else:
            rows = np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64)
            plan = _chunks(rows, rows_per_micro, arrays, lengths, False)
        plans.append(plan)
    return _in_step(plans, lengths)


def _in_step(plans: list[list[MicroBatch]], lengths: NDArray[np.int64]) -> list[list[MicroBatch]]:
    """``plans`` padded so that every rank runs the same passes in the same order.

    Under ZeRO-3 every module call gathers its weights across ranks, so the ranks must call
    the model alike: a shared-prefix micro-batch calls it twice (prefix, then suffixes), a
    plain one once. Each rank runs its shared-prefix micro-batches first, then its plain
    ones, each list padded with weight-0 fillers of the same kind to the longest rank's.
    """
    shortest = int(np.argmin(np.where(lengths > 1, lengths, np.iinfo(np.int64).max)))
    width = int(lengths[shortest])
    fillers = {
        False: MicroBatch((shortest,), width, 1, weight=0.0),
        True: MicroBatch((shortest,), width, max(1, width - 1), shared=True, weight=0.0),
    }
    by_kind = {kind: [[m for m in p if m.shared == kind] for p in plans] for kind in (True, False)}
    counts = {kind: max(len(p) for p in lists) for kind, lists in by_kind.items()}
    counts[False] = max(counts[False], 1 - counts[True])  # at least one pass per step
    padded = []
    for rank in range(len(plans)):
        plan: list[MicroBatch] = []
        for kind in (True, False):
            mine = by_kind[kind][rank]
            plan += mine + [fillers[kind]] * (counts[kind] - len(mine))
        padded.append(plan)
    return padded


def _chunks(
    rows: NDArray[np.int64],
    size: int,
    arrays: TrainingArrays,
    lengths: NDArray[np.int64],
    shared: bool,
) -> list[MicroBatch]:
    micro = []
    for start in range(0, rows.size, size):
        chunk = rows[start : start + size]
        width = int(lengths[chunk].max())
        first = max(1, int(arrays.prefix_lengths[chunk].min()))
        # a prefix pass needs at least one suffix token and pays off with two rows or more
        use_shared = shared and chunk.size > 1 and first < width
        micro.append(MicroBatch(tuple(int(r) for r in chunk), width, first, use_shared))
    return micro


def row_kinds(batch: PaddedBatch) -> NDArray[np.str_]:
    """Group kind (``base`` or ``reset``) of every row of ``batch``."""
    kinds = np.array([g.kind for e in batch.episodes for g in e.groups])
    return kinds[batch.arrays.group_ids]
