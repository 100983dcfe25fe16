"""Episodes on the wire: a table of thoughts plus two flat arrays (token ids, log-probs).

Thoughts are deduplicated by identity, so the seed chain and the reset groups that reuse its
prefix share rows, and the decoded episode shares the same :class:`Thought` objects.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import numpy as np

from thoughtmdp.types import (
    Episode,
    Group,
    GroupKind,
    ParseStatus,
    PrefixState,
    ResetDecision,
    ResetRecord,
    Thought,
    Trajectory,
)

from .frames import EPISODE, LOGPROB_DTYPE, TOKEN_DTYPE, Frames, WireError, field, pack
from .rows import GroupRow, ResetRow, ThoughtRow, TrajectoryRow, read_row


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
        GroupRow(
            kind=g.kind,
            reset_index=g.reset_index,
            advantages=list(g.advantages),
            trajectories=[trajectory_ref(t) for t in g.trajectories],
        )
        for g in episode.groups
    ]
    resets = [_reset_row(r, trajectory_ref(r.seed_trajectory)) for r in episode.resets]
    rows = [_trajectory_row(t, table) for t in trajectories]
    header = {
        "actor": actor,
        "problem_id": episode.problem_id,
        "fell_back": episode.fell_back,
        "unused_tokens": list(episode.unused_tokens),
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
        _thought(row, i, tokens=tokens, logprobs=logprobs)
        for i, row in enumerate(field(header, "thoughts", list))
    ]
    trajectories = [
        _trajectory(row, i, thoughts=thoughts, tokens=tokens)
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
        problem_id=field(header, "problem_id", str),
        groups=groups,
        resets=resets,
        fell_back=field(header, "fell_back", bool),
        unused_tokens=_unused_tokens(header),
        timings={str(k): float(v) for k, v in timings.items() if isinstance(v, int | float)},
    )


def _unused_tokens(header: dict[str, Any]) -> tuple[int, ...]:
    """``unused_tokens``: a list of non-negative counts (absent from older actors: none)."""
    counts = header.get("unused_tokens", [])
    if not isinstance(counts, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts
    ):
        raise WireError(
            f"header: field 'unused_tokens' must be a list of counts >= 0, got {counts!r}"
        )
    return tuple(counts)


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


def _span(value: Any, array: Any, where: str, *, name: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
        raise WireError(f"{where}: field {name!r} must be [offset, length], got {value!r}")
    offset, length = value
    if offset < 0 or length < 0 or offset + length > len(array):
        raise WireError(f"{where}: field {name!r} {value} is outside the array of {len(array)}")
    return tuple(int(i) for i in array[offset : offset + length])


def _thought(raw: Any, i: int, tokens: Any, logprobs: Any) -> Thought:
    where = f"thoughts[{i}]"
    row = read_row(ThoughtRow, raw, where)
    ids = _span(row.span, tokens, where, name="span")
    lp = None
    if row.logprob_offset is not None:
        offset = row.logprob_offset
        if ids is None or offset < 0 or offset + len(ids) > len(logprobs):
            raise WireError(
                f"{where}: field 'logprob_offset' {offset} is outside the array of {len(logprobs)}"
            )
        lp = tuple(float(x) for x in logprobs[offset : offset + len(ids)])
    return Thought(text=row.text, token_ids=ids, logprobs=lp, policy_version=row.policy_version)


def _trajectory(raw: Any, i: int, thoughts: list[Thought], tokens: Any) -> Trajectory:
    where = f"trajectories[{i}]"
    row = read_row(TrajectoryRow, raw, where)
    start = PrefixState(
        problem_id=row.problem_id,
        prompt_token_ids=_span(row.prompt_span, tokens, where, name="prompt_span"),
        thoughts=_refs(row.prefix, thoughts, where, name="prefix"),
    )
    return Trajectory(
        start=start,
        thoughts=_refs(row.thoughts, thoughts, where, name="thoughts"),
        reward=float(row.reward),
        terminated=row.terminated,
        truncated=row.truncated,
        info=row.info,
    )


def _refs(values: list[Any], table: Sequence[Any], where: str, *, name: str) -> tuple[Any, ...]:
    if not all(type(v) is int and 0 <= v < len(table) for v in values):
        raise WireError(f"{where}: field {name!r} refers outside the table of {len(table)}")
    return tuple(table[v] for v in values)


def _choice(value: str, choices: Any, where: str, *, name: str) -> Any:
    """``value`` if it is one of the ``Literal`` type ``choices``; a WireError otherwise."""
    allowed = typing.get_args(choices)
    if value not in allowed:
        listed = ", ".join(repr(c) for c in allowed)
        raise WireError(f"{where}: field {name!r} must be one of {listed}, got {value!r}")
    return value


def _group(raw: Any, i: int, trajectories: list[Trajectory]) -> Group:
    where = f"groups[{i}]"
    row = read_row(GroupRow, raw, where)
    kind = _choice(row.kind, GroupKind, where, name="kind")
    members = _refs(row.trajectories, trajectories, where, name="trajectories")
    advantages = row.advantages
    if len(advantages) != len(members) or not all(isinstance(a, int | float) for a in advantages):
        raise WireError(f"{where}: field 'advantages' needs one number per trajectory")
    return Group(
        kind=kind,
        trajectories=members,
        advantages=tuple(float(a) for a in advantages),
        reset_index=row.reset_index,
    )


def _reset(raw: Any, i: int, trajectories: list[Trajectory]) -> ResetRecord:
    where = f"resets[{i}]"
    row = read_row(ResetRow, raw, where)
    (seed,) = _refs([row.seed_trajectory], trajectories, where, name="seed_trajectory")
    decision = ResetDecision(
        reset_index=row.reset_index,
        policy=row.policy,
        raw_text=row.raw_text,
        parse_status=_choice(row.parse_status, ParseStatus, where, name="parse_status"),
        fallback=row.fallback,
    )
    return ResetRecord(
        seed_trajectory=seed,
        decision=decision,
        oracle_index=row.oracle_index,
        seconds=float(row.seconds),
    )


def _trajectory_row(trajectory: Trajectory, table: _ThoughtTable) -> TrajectoryRow:
    start = trajectory.start
    return TrajectoryRow(
        problem_id=start.problem_id,
        prompt_span=table.add_ids(start.prompt_token_ids),
        prefix=[table.add(t) for t in start.thoughts],
        thoughts=[table.add(t) for t in trajectory.thoughts],
        reward=trajectory.reward,
        terminated=trajectory.terminated,
        truncated=trajectory.truncated,
        info=_plain(dict(trajectory.info)),
    )


def _reset_row(record: ResetRecord, seed_ref: int) -> ResetRow:
    d = record.decision
    return ResetRow(
        seed_trajectory=seed_ref,
        reset_index=d.reset_index,
        policy=d.policy,
        raw_text=d.raw_text,
        parse_status=d.parse_status,
        fallback=d.fallback,
        oracle_index=record.oracle_index,
        seconds=record.seconds,
    )


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
        self.rows: list[ThoughtRow] = []
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
        self.rows.append(
            ThoughtRow(
                text=thought.text,
                span=span,
                logprob_offset=logprob_offset,
                policy_version=thought.policy_version,
            )
        )
        self._index[id(thought)] = len(self.rows) - 1
        return len(self.rows) - 1

    def arrays(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        ids = np.asarray(self.token_ids, dtype=np.int64)
        if ids.size and (ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
            raise WireError("token ids must fit in int32")
        return ids.astype(TOKEN_DTYPE), np.asarray(self.logprobs, dtype=LOGPROB_DTYPE)
