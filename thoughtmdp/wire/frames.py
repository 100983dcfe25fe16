"""Framing shared by every message: kind bytes, the msgpack header, field validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from thoughtmdp.errors import ThoughtMDPError

SCHEMA_VERSION = 1
EPISODE = b"\x01"
ADAPTER = b"\x02"
CREDIT = b"\x03"
HELLO = b"\x04"
CHUNK_REQUEST = b"\x05"
CHUNK = b"\x06"
KINDS = {
    EPISODE: "episode",
    ADAPTER: "adapter",
    CREDIT: "credit",
    HELLO: "hello",
    CHUNK_REQUEST: "chunk request",
    CHUNK: "chunk",
}
TOKEN_DTYPE = np.dtype("<i4")
LOGPROB_DTYPE = np.dtype("<f8")  # float64 keeps Python floats bit-exact
MAX_MESSAGE_BYTES = 64 * 2**20

Frames = list[bytes | memoryview]
Kind = type | tuple[type, ...]
"""The type, or types, a field may hold."""


def nbytes(frame: bytes | memoryview) -> int:
    """Size of a frame in bytes (a memoryview's ``len`` counts items, not bytes)."""
    return memoryview(frame).nbytes


class WireError(ThoughtMDPError, ValueError):
    """A message is malformed, truncated, oversized or of an unknown kind or schema."""


def pack(header: dict[str, Any]) -> bytes:
    """The msgpack header frame, stamped with the schema version.

    Raises:
        WireError: If a value is not plain data (str, number, bool, None, list, dict, bytes).
    """
    try:
        packed: bytes = msgpack.packb({"schema": SCHEMA_VERSION, **header}, use_bin_type=True)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"message holds a value that cannot be sent: {exc}") from None


def unpack(frame: bytes | memoryview) -> dict[str, Any]:
    """The header as a dict, after checking it is msgpack (no extensions) of our schema.

    Raises:
        WireError: For invalid msgpack, an extension type, a non-map or another schema.
    """

    def no_extensions(code: int, data: bytes) -> Any:
        raise WireError(f"msgpack extension type {code} is not allowed")

    try:
        header = msgpack.unpackb(
            bytes(frame), raw=False, ext_hook=no_extensions, strict_map_key=True
        )
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header must be a map, got {type(header).__name__}")
    schema = header.get("schema")
    if schema != SCHEMA_VERSION:
        raise WireError(f"schema version {schema!r} is not supported (expected {SCHEMA_VERSION})")
    return header


def no_arrays(arrays: Sequence[Any], kind: str) -> None:
    """Raise :class:`WireError` if a message that carries no arrays has some."""
    if arrays:
        raise WireError(f"{kind} message has {len(arrays)} unexpected array frame(s)")


def field(header: Any, key: str, kind: Kind, where: str = "header") -> Any:
    """``header[key]`` if it is of type ``kind``, else a :class:`WireError` naming the field."""
    try:
        value = header[key]
    except (KeyError, IndexError, TypeError):
        raise WireError(f"{where}: missing field {key!r}") from None
    return checked(value, kind, where=where, name=key)


def checked(value: Any, kind: Kind, *, where: str, name: str) -> Any:
    """``value`` if it is of type ``kind``; otherwise a :class:`WireError` naming field ``name``."""
    # bool is an int subclass: only accept it where bool is asked for
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise WireError(
            f"{where}: field {name!r} must be {_names(kind)}, got {type(value).__name__}"
        )
    return value


def _types(kind: Kind) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: Kind) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in _types(kind))
