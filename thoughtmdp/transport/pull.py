"""The actor's side of chunked adapter transfer: pull a notice's files into a folder.

Each file is asked for one piece at a time and appended to disk as it arrives, so memory
stays at one chunk whatever the adapter's size; the episodes the actor sends meanwhile share
the socket and are not held up. The caller checks the SHA-256 of the result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.wire import CHUNK_BYTES, AdapterNotice, Chunk, ChunkRequest

RequestChunk = Callable[[ChunkRequest], Awaitable[Chunk]]
"""Sends a request and waits for its answer (:meth:`EpisodeSender.request_chunk`)."""


class TransferFailed(ThoughtMDPError):
    """An adapter's files could not be pulled from the learner."""


async def pull_files(request_chunk: RequestChunk, notice: AdapterNotice, folder: Path) -> None:
    """Write the files ``notice.sizes`` lists into ``folder``, chunk by chunk.

    Raises:
        TransferFailed: If a name is unsafe, the learner answers with an error, or a chunk
            is not the piece asked for.
    """
    for name, size in notice.sizes:
        if Path(name).name != name or name in ("", ".", ".."):
            raise TransferFailed(f"adapter v{notice.version}: unsafe file name {name!r}")
        with open(folder / name, "wb") as out:
            offset = 0
            while offset < size:
                length = min(CHUNK_BYTES, size - offset)
                chunk = await request_chunk(ChunkRequest(notice.version, name, offset, length))
                _check(chunk, notice.version, name, offset, length)
                out.write(chunk.data)
                offset += len(chunk.data)


def _check(chunk: Chunk, version: int, name: str, offset: int, length: int) -> None:
    if chunk.error:
        raise TransferFailed(f"adapter v{version}: the learner says: {chunk.error}")
    if (chunk.version, chunk.name, chunk.offset) != (version, name, offset) or not (
        0 < len(chunk.data) <= length
    ):
        raise TransferFailed(
            f"adapter v{version}: asked for {length} bytes of {name!r} at {offset}, got "
            f"{len(chunk.data)} bytes of {chunk.name!r} v{chunk.version} at {chunk.offset}"
        )
