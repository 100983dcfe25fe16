"""Control messages (adapter notices, hellos, credits) and decoding of any message."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtmdp.types import Episode

from .chunks import Chunk, ChunkRequest, decode_chunk, decode_chunk_request
from .episode import decode_episode
from .frames import (
    ADAPTER,
    CHUNK,
    CHUNK_REQUEST,
    CREDIT,
    EPISODE,
    HELLO,
    KINDS,
    MAX_MESSAGE_BYTES,
    Frames,
    WireError,
    field,
    nbytes,
    no_arrays,
    pack,
    unpack,
)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = ("adapter_config.json", ADAPTER_WEIGHTS)
"""The files of one adapter version; the notice's digest is that of the weights."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (the digest an :class:`AdapterNotice` carries)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class AdapterNotice:
    """A new LoRA version published by the learner.

    Attributes:
        version: The policy version the adapter holds.
        sha256: Digest of ``adapter_model.safetensors``; actors verify it before loading.
        path: Directory of the adapter on a shared file system, or ``None`` when inline.
        files: Inline file contents by name, for actors without a shared file system.
        sizes: Sizes by name of the files an actor pulls from the learner in chunks
            (:mod:`thoughtmdp.wire.chunks`), for adapters too large to send inline.
    """

    version: int
    sha256: str
    path: str | None = None
    files: tuple[tuple[str, bytes], ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Hello:
    """An actor saying it holds no credit (on connect, or after waiting too long).

    Attributes:
        actor: The actor's name.
        sent: Episodes it has sent so far; the learner grants credits beyond this count.
    """

    actor: str
    sent: int = 0


@dataclass(frozen=True)
class Credit:
    """The learner allowing an actor to send episodes until it has sent ``limit`` in all.

    The limit is cumulative, so repeating or reordering a credit never grants extra room.
    """

    limit: int


Message = Episode | AdapterNotice | Hello | Credit | ChunkRequest | Chunk


def encode_adapter(notice: AdapterNotice) -> Frames:
    """Frames of an adapter notice; inline files travel as raw frames."""
    header = {
        "version": notice.version,
        "sha256": notice.sha256,
        "path": notice.path,
        "files": [name for name, _ in notice.files],
        "sizes": [[name, size] for name, size in notice.sizes],
    }
    return [ADAPTER, pack(header), *(content for _, content in notice.files)]


def encode_hello(hello: Hello) -> Frames:
    """Frames of an actor's hello."""
    return [HELLO, pack({"actor": hello.actor, "sent": hello.sent})]


def encode_credit(credit: Credit) -> Frames:
    """Frames of a credit limit."""
    return [CREDIT, pack({"limit": credit.limit})]


def decode(frames: Sequence[bytes | memoryview], max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode any message into its value (dispatch on its type with ``isinstance``).

    Raises:
        WireError: For an empty, oversized, truncated, foreign or malformed message; the
            message says which field was wrong.
    """
    if not frames:
        raise WireError("empty message")
    size = sum(nbytes(f) for f in frames)
    if size > max_bytes:
        raise WireError(f"message of {size} bytes exceeds the limit of {max_bytes}")
    kind = bytes(frames[0])
    if kind not in KINDS:
        raise WireError(f"unknown message kind {kind[:8]!r}")
    if len(frames) < 2:
        raise WireError(f"{KINDS[kind]} message has no header frame")
    header = unpack(frames[1])
    arrays = frames[2:]
    if kind == EPISODE:
        return decode_episode(header, arrays)
    if kind == ADAPTER:
        return _decode_adapter(header, arrays)
    if kind == HELLO:
        no_arrays(arrays, "hello")
        return Hello(field(header, "actor", str), field(header, "sent", int))
    if kind == CHUNK_REQUEST:
        return decode_chunk_request(header, arrays)
    if kind == CHUNK:
        return decode_chunk(header, arrays)
    no_arrays(arrays, "credit")
    return Credit(field(header, "limit", int))


def _decode_adapter(header: dict[str, Any], arrays: Sequence[bytes | memoryview]) -> AdapterNotice:
    names = field(header, "files", list)
    if len(names) != len(arrays) or not all(isinstance(n, str) for n in names):
        raise WireError(f"adapter notice names {len(names)} files but carries {len(arrays)}")
    return AdapterNotice(
        version=field(header, "version", int),
        sha256=field(header, "sha256", str),
        path=field(header, "path", (str, type(None))),
        files=tuple((n, bytes(a)) for n, a in zip(names, arrays, strict=True)),
        sizes=_sizes(header.get("sizes", [])),
    )


def _sizes(value: Any) -> tuple[tuple[str, int], ...]:
    """The ``sizes`` field: ``[[name, size], ...]`` with str names and sizes >= 0."""
    if not isinstance(value, list) or not all(
        isinstance(pair, list)
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], int)
        and not isinstance(pair[1], bool)
        and pair[1] >= 0
        for pair in value
    ):
        raise WireError("header: field 'sizes' must be a list of [name, size >= 0]")
    return tuple((name, size) for name, size in value)
