"""Episodes on the wire: a table of thoughts plus two flat arrays (token ids, log-probs).

Thoughts are deduplicated by identity, so the seed chain and the reset groups that reuse its
prefix share rows, and the decoded episode shares the same :class:`Thought` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from thoughtmdp.types import (
    Episode,
    Group,
    PrefixState,
    ResetDecision,
    ResetRecord,
    Thought,
    Trajectory,
)

from .frames import EPISODE, LOGPROB_DTYPE, TOKEN_DTYPE, Frames, WireError, field, pack


def encode_episode(episode: Episode, actor: str = "") -> Frames:
    """Frames of one episode.

    Raises:
        WireError: If a value cannot travel (a verifier info value that is not plain data,
            a token id outside int32).
    """
    table = _ThoughtTable()
    trajectories: list[Trajectory] = []
    index: dict[int, int] = {}

    def trajectory_ref(trajectory: Trajectory) -> int:
        if id(trajectory) not in index:
            index[id(trajectory)] = len(trajectories)
            trajectories.append(trajectory)
        return index[id(trajectory)]

    groups = [
        [g.kind, g.reset_index, list(g.advantages), [trajectory_ref(t) for t in g.trajectories]]
        for g in episode.groups
    ]
    resets = [_reset_row(r, trajectory_ref(r.seed_trajectory)) for r in episode.resets]
    rows = [_trajectory_row(t, table) for t in trajectories]
    header = {
        "actor": actor,
        "problem_id": episode.problem_id,
        "fell_back": episode.fell_back,
        "timings": dict(episode.timings),
        "thoughts": table.rows,
        "trajectories": rows,
        "groups": groups,
        "resets": resets,
        "sizes": [len(table.token_ids), len(table.logprobs)],
    }
    tokens, logprobs = table.arrays()
    return [EPISODE, pack(header), tokens.data.cast("B"), logprobs.data.cast("B")]


def decode_episode(header: dict[str, Any], arrays: Sequence[bytes | memoryview]) -> Episode:
    """Rebuild an episode from its header and two array frames.

    Raises:
        WireError: If any field is missing, of the wrong type, or out of range.
    """
    tokens, logprobs = _arrays(header, arrays)
    thoughts = [
        _thought(row, i, tokens, logprobs) for i, row in enumerate(field(header, "thoughts", list))
    ]
    trajectories = [
        _trajectory(row, i, thoughts, tokens)
        for i, row in enumerate(field(header, "trajectories", list))
    ]
    groups = tuple(
        _group(row, i, trajectories) for i, row in enumerate(field(header, "groups", list))
    )
    resets = tuple(
        _reset(row, i, trajectories) for i, row in enumerate(field(header, "resets", list))
    )
    timings = field(header, "timings", dict)
    return Episode(
        field(header, "problem_id", str),
        groups,
        resets,
        field(header, "fell_back", bool),
        {str(k): float(v) for k, v in timings.items() if isinstance(v, int | float)},
    )


def _arrays(header: dict[str, Any], arrays: Sequence[bytes | memoryview]) -> tuple[Any, Any]:
    if len(arrays) != 2:
        raise WireError(f"episode needs 2 array frames (token ids, log-probs), got {len(arrays)}")
    sizes = field(header, "sizes", list)
    expected: list[tuple[np.dtype[Any], str]] = [
        (TOKEN_DTYPE, "token ids"),
        (LOGPROB_DTYPE, "log-probs"),
    ]
    decoded = []
    for frame, size, (dtype, name) in zip(arrays, sizes, expected, strict=False):
        if not isinstance(size, int) or len(frame) != size * dtype.itemsize:
            raise WireError(f"{name} frame holds {len(frame)} bytes, header says {size!r} values")
        decoded.append(np.frombuffer(frame, dtype=dtype))
    if len(decoded) != 2:
        raise WireError("header field 'sizes' must list 2 sizes")
    return decoded[0], decoded[1]


def _span(value: Any, where: str, array: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise WireError(f"{where}: span must be [offset, length], got {value!r}")
    offset, length = value
    if offset < 0 or length < 0 or offset + length > len(array):
        raise WireError(f"{where}: span {value} is outside the array of {len(array)}")
    return tuple(int(i) for i in array[offset : offset + length])


def _thought(row: Any, i: int, tokens: Any, logprobs: Any) -> Thought:
    where = f"thoughts[{i}]"
    text = field(row, 0, str, where)
    ids = _span(field(row, 1, (list, type(None)), where), where, tokens)
    version = field(row, 3, (int, type(None)), where)
    offset = field(row, 2, (int, type(None)), where)
    lp = None
    if offset is not None:
        if ids is None or offset < 0 or offset + len(ids) > len(logprobs):
            raise WireError(f"{where}: log-probs outside the array of {len(logprobs)}")
        lp = tuple(float(x) for x in logprobs[offset : offset + len(ids)])
    return Thought(text, ids, lp, version)


def _trajectory(row: Any, i: int, thoughts: list[Thought], tokens: Any) -> Trajectory:
    where = f"trajectories[{i}]"
    prompt = _span(field(row, 1, (list, type(None)), where), where, tokens)
    prefix = _refs(field(row, 2, list, where), thoughts, where)
    sampled = _refs(field(row, 3, list, where), thoughts, where)
    start = PrefixState(field(row, 0, str, where), prompt, prefix)
    reward = float(field(row, 4, (int, float), where))
    flags = field(row, 5, bool, where), field(row, 6, bool, where)
    return Trajectory(start, sampled, reward, *flags, field(row, 7, dict, where))


def _refs(values: list[Any], table: Sequence[Any], where: str) -> tuple[Any, ...]:
    if not all(type(v) is int and 0 <= v < len(table) for v in values):
        raise WireError(f"{where}: references outside the table of {len(table)}")
    return tuple(table[v] for v in values)


def _group(row: Any, i: int, trajectories: list[Trajectory]) -> Group:
    where = f"groups[{i}]"
    kind = field(row, 0, str, where)
    if kind not in ("base", "reset"):
        raise WireError(f"{where}: kind must be 'base' or 'reset', got {kind!r}")
    advantages = field(row, 2, list, where)
    members = _refs(field(row, 3, list, where), trajectories, where)
    if len(advantages) != len(members) or not all(isinstance(a, int | float) for a in advantages):
        raise WireError(f"{where}: needs one numeric advantage per trajectory")
    return Group(
        kind, members, tuple(float(a) for a in advantages), field(row, 1, (int, type(None)), where)
    )


def _reset(row: Any, i: int, trajectories: list[Trajectory]) -> ResetRecord:
    where = f"resets[{i}]"
    (seed,) = _refs([field(row, 0, int, where)], trajectories, where)
    status = field(row, 4, str, where)
    if status not in ("ok", "unparsable", "out_of_range", "not_applicable"):
        raise WireError(f"{where}: unknown parse status {status!r}")
    decision = ResetDecision(
        field(row, 1, (int, type(None)), where),
        field(row, 2, str, where),
        field(row, 3, (str, type(None)), where),
        status,
        field(row, 5, (str, type(None)), where),
    )
    oracle = field(row, 6, (int, type(None)), where)
    return ResetRecord(seed, decision, oracle, float(field(row, 7, (int, float), where)))


def _trajectory_row(trajectory: Trajectory, table: _ThoughtTable) -> list[Any]:
    start = trajectory.start
    prompt = table.add_ids(start.prompt_token_ids)
    return [
        start.problem_id,
        prompt,
        [table.add(t) for t in start.thoughts],
        [table.add(t) for t in trajectory.thoughts],
        trajectory.reward,
        trajectory.terminated,
        trajectory.truncated,
        _plain(dict(trajectory.info)),
    ]


def _reset_row(record: ResetRecord, seed_ref: int) -> list[Any]:
    d = record.decision
    return [
        seed_ref,
        d.reset_index,
        d.policy,
        d.raw_text,
        d.parse_status,
        d.fallback,
        record.oracle_index,
        record.seconds,
    ]


def _plain(value: Any) -> Any:
    """Verifier info as msgpack-able plain data (numpy scalars become Python numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _ThoughtTable:
    """Deduplicates thoughts (by identity) and concatenates their arrays."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self._index: dict[int, int] = {}

    def add_ids(self, ids: Sequence[int] | None) -> list[int] | None:
        if ids is None:
            return None
        offset = len(self.token_ids)
        self.token_ids.extend(ids)
        return [offset, len(ids)]

    def add(self, thought: Thought) -> int:
        if id(thought) in self._index:
            return self._index[id(thought)]
        span = self.add_ids(thought.token_ids)
        logprob_offset = None
        if thought.logprobs is not None:
            logprob_offset = len(self.logprobs)
            self.logprobs.extend(thought.logprobs)
        self.rows.append([thought.text, span, logprob_offset, thought.policy_version])
        self._index[id(thought)] = len(self.rows) - 1
        return len(self.rows) - 1

    def arrays(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        ids = np.asarray(self.token_ids, dtype=np.int64)
        if ids.size and (ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
            raise WireError("token ids must fit in int32")
        return ids.astype(TOKEN_DTYPE), np.asarray(self.logprobs, dtype=LOGPROB_DTYPE)
