"""Adapter files pulled in chunks: an actor's :class:`ChunkRequest`, the learner's :class:`Chunk`.

An adapter notice without a shared path lists its files and their sizes; the actor asks for
one piece at a time (at most :data:`CHUNK_BYTES`) and writes each to disk as it arrives, so
an adapter of any size travels with bounded memory on both ends and never blocks episodes
behind one huge message.

>>> from thoughtmdp.wire import decode
>>> request = ChunkRequest(3, "adapter_model.safetensors", 0, 4)
>>> decode(encode_chunk_request(request)) == request
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .frames import CHUNK, CHUNK_REQUEST, Frames, WireError, field, no_arrays, pack

CHUNK_BYTES = 8 * 2**20
"""Largest piece of a file one chunk carries."""


@dataclass(frozen=True)
class ChunkRequest:
    """An actor asking for ``length`` bytes of an adapter file from ``offset``.

    Attributes:
        version: The adapter version.
        name: The file's name, one of those the notice lists.
        offset: First byte.
        length: Bytes wanted (at most :data:`CHUNK_BYTES` are sent).
    """

    version: int
    name: str
    offset: int
    length: int


@dataclass(frozen=True)
class Chunk:
    """The learner's answer to a :class:`ChunkRequest`.

    Attributes:
        version: The adapter version.
        name: The file's name.
        offset: First byte of ``data``.
        data: The bytes (empty when ``error`` is set).
        error: Why the piece cannot be sent (e.g. the version is no longer kept), or ``""``.
    """

    version: int
    name: str
    offset: int
    data: bytes = b""
    error: str = ""


def encode_chunk_request(request: ChunkRequest) -> Frames:
    """Frames of a chunk request."""
    header = {
        "version": request.version,
        "name": request.name,
        "offset": request.offset,
        "length": request.length,
    }
    return [CHUNK_REQUEST, pack(header)]


def encode_chunk(chunk: Chunk) -> Frames:
    """Frames of a chunk; its bytes travel as one raw frame."""
    header = {
        "version": chunk.version,
        "name": chunk.name,
        "offset": chunk.offset,
        "error": chunk.error,
    }
    return [CHUNK, pack(header), chunk.data]


def decode_chunk_request(header: dict[str, Any], arrays: Sequence[Any]) -> ChunkRequest:
    """A chunk request from its header (it carries no frames)."""
    no_arrays(arrays, "chunk request")
    request = ChunkRequest(
        field(header, "version", int),
        field(header, "name", str),
        field(header, "offset", int),
        field(header, "length", int),
    )
    if request.offset < 0:
        raise WireError(f"header: field 'offset' must be >= 0, got {request.offset}")
    if request.length <= 0:
        raise WireError(f"header: field 'length' must be > 0, got {request.length}")
    return request


def decode_chunk(header: dict[str, Any], arrays: Sequence[Any]) -> Chunk:
    """A chunk from its header and its one data frame."""
    if len(arrays) != 1:
        raise WireError(f"chunk message carries {len(arrays)} data frames, expected 1")
    return Chunk(
        field(header, "version", int),
        field(header, "name", str),
        field(header, "offset", int),
        bytes(arrays[0]),
        field(header, "error", str),
    )
