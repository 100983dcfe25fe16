"""The rows of an episode header: one named layout per table, and their checked decoding.

A row travels as a msgpack array (a :class:`~typing.NamedTuple` packs as one), so the wire
stays compact; the layout's field names and annotations are the single statement of what
each position holds. Decoding checks each field's type against its annotation and names
the field in the :class:`~thoughtmdp.wire.frames.WireError` it raises.

>>> read_row(GroupRow, ["base", None, [0.5], [0]], "groups[0]")
GroupRow(kind='base', reset_index=None, advantages=[0.5], trajectories=[0])
>>> read_row(GroupRow, ["base", "2", [0.5], [0]], "groups[0]")
Traceback (most recent call last):
...
thoughtmdp.wire.frames.WireError: groups[0]: field 'reset_index' must be int or None, got str
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, NamedTuple, TypeVar

from .frames import Kind, WireError, checked

Row = TypeVar("Row", bound=NamedTuple)


class ThoughtRow(NamedTuple):
    """A row of the thought table; spans index the episode's two array frames."""

    text: str
    span: list[int] | None  # [offset, length] in the token-id frame
    logprob_offset: int | None  # in the log-prob frame; as many log-probs as span tokens
    policy_version: int | None


class TrajectoryRow(NamedTuple):
    """A row of the trajectory table; thoughts are indices into the thought table."""

    problem_id: str
    prompt_span: list[int] | None  # [offset, length] in the token-id frame
    prefix: list[int]  # the start state's thoughts
    thoughts: list[int]  # the thoughts sampled from that state
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class GroupRow(NamedTuple):
    """A group; ``trajectories`` are indices into the trajectory table."""

    kind: str
    reset_index: int | None
    advantages: list[float]  # one per trajectory
    trajectories: list[int]


class ResetRow(NamedTuple):
    """A reset record: its seed trajectory (an index) and the flattened reset decision."""

    seed_trajectory: int
    reset_index: int | None
    policy: str
    raw_text: str | None
    parse_status: str
    fallback: str | None
    oracle_index: int | None
    seconds: float


def read_row(layout: type[Row], raw: Any, where: str) -> Row:
    """``raw`` as a ``layout`` row, each field checked against its annotation.

    The check is shallow (a ``list[int]`` field must be a list; its items are checked
    where they are used). Values past the layout's fields are ignored, so a newer writer
    may append fields.

    Args:
        layout: The row's NamedTuple.
        raw: The decoded msgpack value.
        where: The row's place in the header, for error messages (``"thoughts[3]"``).

    Returns:
        The row.

    Raises:
        WireError: If ``raw`` is not a list, or a field is missing or of the wrong type.
    """
    if not isinstance(raw, list):
        raise WireError(f"{where}: row must be a list, got {type(raw).__name__}")
    kinds = _kinds(layout)
    values = []
    for position, name in enumerate(layout._fields):
        if position >= len(raw):
            raise WireError(f"{where}: missing field {name!r}")
        values.append(checked(raw[position], kinds[name], where=where, name=name))
    return layout._make(values)


@functools.cache
def _kinds(layout: type[NamedTuple]) -> dict[str, Kind]:
    return {name: _kind(hint) for name, hint in typing.get_type_hints(layout).items()}


def _kind(hint: Any) -> tuple[type, ...]:
    """The runtime types an annotation admits (``float`` admits msgpack's ints too)."""
    if hint is float:
        return (int, float)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(kind for arg in typing.get_args(hint) for kind in _kind(arg))
    return (typing.get_origin(hint) or hint,)
