"""How a value a program returned travels from the sandbox child to the parent.

The encoding keeps what ``==`` would see: nested tuples and values without a JSON form are
tagged, so they never compare equal to plain JSON data. Only the standard library is used:
the sandbox child imports this file by itself.
"""

from __future__ import annotations

import json
import numbers
from typing import Any

TAG_TUPLE = "\x00tuple"
TAG_OPAQUE = "\x00opaque"


class Opaque:
    """A returned value with no JSON form (a set, an object): equal to nothing."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return self.text


def encode_value(value: Any) -> Any:
    r"""A returned value as plain JSON data that keeps what ``==`` would see.

    A top-level tuple becomes a list (``lcb_runner`` forgives tuples there); nested tuples
    and values without a JSON form are tagged, so they never compare equal to the JSON
    expected output after :func:`decode_value`. Subclasses of builtins and numeric scalars
    of other libraries keep their plain value, so an overridden ``__eq__`` gains nothing.

    Args:
        value: What the program returned.

    Returns:
        Data for :func:`json.dumps`.

    >>> encode_value((1, (2, 3), {4}))
    [1, {'\x00tuple': [2, 3]}, {'\x00opaque': '{4}'}]
    """
    return _plain(list(value) if isinstance(value, tuple) else value)


def _plain(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return {TAG_TUPLE: [_plain(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {str.__str__(key): _plain(item) for key, item in value.items()}
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy scalars such as numpy.bool_
    if callable(item) and type(value).__module__ == "numpy":
        plain = item()
        if type(plain) in (bool, int, float, str):
            return plain
    return {TAG_OPAQUE: _clip(repr(value), 200)}


def decode_value(text: str) -> Any:
    r"""Rebuild a return value sent by the sandbox child (tuples and opaque values tagged).

    Args:
        text: JSON written by the child's value encoder.

    Returns:
        The value, with nested tuples as tuples and non-JSON values as :class:`Opaque`.

    >>> decode_value('[1, {"\\u0000tuple": [2, 3]}]')
    [1, (2, 3)]
    """
    return json.loads(text, object_hook=_untag)


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if TAG_TUPLE in obj and isinstance(obj[TAG_TUPLE], list):
            return tuple(obj[TAG_TUPLE])
        if TAG_OPAQUE in obj:
            return Opaque(str(obj[TAG_OPAQUE]))
    return obj


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]
