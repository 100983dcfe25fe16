"""How a value a program returned travels from the sandbox child to the parent.

The encoding keeps what ``==`` would see: nested tuples and values without a JSON form are
tagged, so they never compare equal to plain JSON data. Only the standard library is used:
the sandbox child imports this file by itself.
"""

from __future__ import annotations

import json
import numbers
import re
from typing import Any

TAG_TUPLE = "\x00tuple"
TAG_OPAQUE = "\x00opaque"
MAX_VALUE_DEPTH = 200
"""Deepest nesting of a returned value the parent decodes; deeper is unreadable."""
MAX_INT_DIGITS = 50_000
"""Longest integer read, as ``lcb_runner`` allows (``sys.set_int_max_str_digits(50000)``)."""
_SAFE_DIGITS = 4000  # below the interpreter's default limit on int() of a string
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


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
    return bounded_loads(text, MAX_VALUE_DEPTH, MAX_INT_DIGITS, object_hook=_untag)


def bounded_loads(text: str | bytes, max_depth: int, max_digits: int, **hooks: Any) -> Any:
    """``json.loads`` that refuses deep nesting and long integers before they cost anything.

    Integers up to ``max_digits`` digits are read whatever the interpreter's own limit on
    converting strings to integers (4,300 digits by default).

    Args:
        text: The JSON text.
        max_depth: The most arrays and objects one value may nest.
        max_digits: The most digits an integer may have.
        **hooks: More keyword arguments for :func:`json.loads` (``object_hook``...).

    Returns:
        The value.

    Raises:
        ValueError: If the text is not JSON, nests deeper than ``max_depth`` or holds a
            longer integer (the message says which).

    >>> bounded_loads("[[1]]", max_depth=2, max_digits=3)
    [[1]]
    >>> bounded_loads("[[[1]]]", max_depth=2, max_digits=3)
    Traceback (most recent call last):
    ...
    ValueError: JSON nested deeper than 2 levels
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "surrogatepass")
    if json_depth(text, max_depth) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > max_digits:
            raise ValueError(f"an integer of more than {max_digits} digits")
        return long_int(digits)

    try:
        return json.loads(text, parse_int=parse_int, **hooks)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None


def json_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in ``text``, as far as ``limit`` matters.

    Brackets inside strings do not count. The result is exact above ``limit`` up to
    ``limit + 1``; at or below it, it is at most ``limit``.

    >>> json_depth('[{"a": "[[["}, []]', limit=2), json_depth('[[[]]]', limit=2)
    (2, 3)
    """
    if text.count("[") + text.count("{") <= limit:
        return limit  # too few brackets to go deeper: no need to look closer
    skeleton = _STRING.sub("", text) if '"' in text else text
    depth = deepest = 0
    for match in _BRACKETS.finditer(skeleton):
        depth += 1 if match.group() in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def long_int(digits: str) -> int:
    """``int(digits)`` for decimal text of any length, in pieces the interpreter accepts.

    >>> long_int("-" + "9" * 9000) == -(10**9000 - 1)
    True
    """
    if len(digits) <= _SAFE_DIGITS:
        return int(digits)
    negative = digits.startswith("-")
    body = digits[1:] if negative else digits
    half = len(body) // 2
    value = long_int(body[:-half]) * 10**half + long_int(body[-half:])
    return -value if negative else value


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if TAG_TUPLE in obj and isinstance(obj[TAG_TUPLE], list):
            return tuple(obj[TAG_TUPLE])
        if TAG_OPAQUE in obj:
            return Opaque(str(obj[TAG_OPAQUE]))
    return obj


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]
