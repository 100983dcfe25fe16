"""Control messages (adapter notices, hellos, credits) and decoding of any message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thoughtmdp.types import Episode

from .episode import decode_episode
from .frames import (
    ADAPTER,
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


@dataclass(frozen=True)
class AdapterNotice:
    """A new LoRA version published by the learner.

    Attributes:
        version: The policy version the adapter holds.
        sha256: Digest of ``adapter_model.safetensors``; actors verify it before loading.
        path: Directory of the adapter on a shared file system, or ``None`` when inline.
        files: Inline file contents by name, for actors without a shared file system.
    """

    version: int
    sha256: str
    path: str | None = None
    files: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Hello:
    """An actor introducing itself (and asking for the latest adapter)."""

    actor: str


@dataclass(frozen=True)
class Credit:
    """The learner allowing an actor to send ``credits`` more episodes."""

    credits: int


Message = tuple[str, Episode] | tuple[str, AdapterNotice] | tuple[str, Hello] | tuple[str, Credit]


def encode_adapter(notice: AdapterNotice) -> Frames:
    """Frames of an adapter notice; inline files travel as raw frames."""
    header = {
        "version": notice.version,
        "sha256": notice.sha256,
        "path": notice.path,
        "files": [name for name, _ in notice.files],
    }
    return [ADAPTER, pack(header), *(content for _, content in notice.files)]


def encode_hello(hello: Hello) -> Frames:
    """Frames of an actor's hello."""
    return [HELLO, pack({"actor": hello.actor})]


def encode_credit(credit: Credit) -> Frames:
    """Frames granting credits."""
    return [CREDIT, pack({"credits": credit.credits})]


def decode(frames: Sequence[bytes | memoryview], max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode any message; returns ``(kind name, value)``.

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
        return "episode", decode_episode(header, arrays)
    if kind == ADAPTER:
        return "adapter", _decode_adapter(header, arrays)
    if kind == HELLO:
        no_arrays(arrays, "hello")
        return "hello", Hello(field(header, "actor", str))
    no_arrays(arrays, "credit")
    return "credit", Credit(field(header, "credits", int))


def _decode_adapter(header: dict[str, Any], arrays: Sequence[bytes | memoryview]) -> AdapterNotice:
    names = field(header, "files", list)
    if len(names) != len(arrays) or not all(isinstance(n, str) for n in names):
        raise WireError(f"adapter notice names {len(names)} files but carries {len(arrays)}")
    return AdapterNotice(
        field(header, "version", int),
        field(header, "sha256", str),
        field(header, "path", (str, type(None))),
        tuple((n, bytes(a)) for n, a in zip(names, arrays, strict=True)),
    )
