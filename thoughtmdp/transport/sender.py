"""The actor's end: an asyncio DEALER that sends episodes only while it holds credits.

``send`` waits for a credit, so a slow learner makes actors wait instead of dropping
episodes. When an actor holds no credit for ``hello_interval`` seconds it says hello again:
a restarted learner learns of it that way, and a lost credit or adapter notice is repaired.
Adapter files too large for a notice are pulled with :meth:`EpisodeSender.pull_adapter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from thoughtmdp.types import Episode
from thoughtmdp.wire import (
    AdapterNotice,
    Chunk,
    ChunkRequest,
    Credit,
    Hello,
    WireError,
    decode,
    encode_chunk_request,
    encode_episode,
    encode_hello,
)

from .pull import TransferFailed, pull_files
from .security import CurveClient, apply_client_keys

logger = logging.getLogger(__name__)
CHUNK_TRIES = 3


class EpisodeSender:
    """Sends episodes to the learner; receives credits and adapter notices.

    Use as ``async with EpisodeSender(address, "actor-0") as sender: await sender.send(e)``.

    Args:
        address: The learner's address, e.g. ``"tcp://127.0.0.1:5555"``.
        actor: This actor's name (unique among actors; it is the socket identity).
        hello_interval: Seconds without credit before saying hello again.
        curve: CURVE keys, when the learner requires them.
        chunk_timeout: Seconds to wait for a chunk of an adapter before asking again;
            after ``CHUNK_TRIES`` unanswered requests the pull fails.
    """

    def __init__(
        self,
        address: str,
        actor: str,
        hello_interval: float = 2.0,
        curve: CurveClient | None = None,
        chunk_timeout: float = 30.0,
    ) -> None:
        if not actor or not actor.isprintable():
            raise ValueError(f"actor name must be a non-empty printable str, got {actor!r}")
        self.address, self.actor = address, actor
        self.hello_interval, self.curve = hello_interval, curve
        self.chunk_timeout = chunk_timeout
        self._chunk: asyncio.Queue[Chunk] = asyncio.Queue()
        self._pulling = asyncio.Lock()
        self.limit = 0
        self.latest: AdapterNotice | None = None
        self.notices: asyncio.Queue[AdapterNotice] = asyncio.Queue()
        self.sent = 0
        self._credit = asyncio.Condition()
        self._socket: Any = None
        self._context: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EpisodeSender:
        import zmq
        import zmq.asyncio

        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.IDENTITY, self.actor.encode())
        self._socket.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            apply_client_keys(self._socket, self.curve)
        self._socket.connect(self.address)
        self._reader = asyncio.create_task(self._read())
        await self._hello()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading and close the socket."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._socket is not None:
            self._socket.close(linger=0)
            self._context.term()
            self._socket = None

    async def send(self, episode: Episode) -> None:
        """Send one episode, waiting for a credit first."""
        async with self._credit:
            while self.sent >= self.limit:
                try:
                    await asyncio.wait_for(self._credit.wait(), self.hello_interval)
                except TimeoutError:
                    await self._hello()
            self.sent += 1
            await self._socket.send_multipart(encode_episode(episode, self.actor), copy=False)

    async def pull_adapter(self, notice: AdapterNotice, folder: Path) -> None:
        """Pull the files ``notice.sizes`` lists from the learner into ``folder``.

        Raises:
            TransferFailed: If the learner refuses or stops answering, or a chunk is wrong.
        """
        async with self._pulling:  # one pull at a time: answers come back in order
            await pull_files(self.request_chunk, notice, folder)

    async def request_chunk(self, request: ChunkRequest) -> Chunk:
        """Ask the learner for one piece of an adapter file; wait for the answer.

        Raises:
            TransferFailed: After ``CHUNK_TRIES`` requests unanswered for ``chunk_timeout``.
        """
        for _ in range(CHUNK_TRIES):
            await self._socket.send_multipart(encode_chunk_request(request))
            deadline = asyncio.get_running_loop().time() + self.chunk_timeout
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    chunk = await asyncio.wait_for(self._chunk.get(), left)
                except TimeoutError:
                    break
                if (chunk.version, chunk.name, chunk.offset) == (
                    request.version,
                    request.name,
                    request.offset,
                ):
                    return chunk  # an answer to an earlier, timed-out request is dropped
        raise TransferFailed(
            f"adapter v{request.version}: no answer for {request.name!r} at {request.offset} "
            f"after {CHUNK_TRIES} requests of {self.chunk_timeout:g} s"
        )

    @property
    def credits(self) -> int:
        """Episodes this actor may still send now."""
        return max(0, self.limit - self.sent)

    async def _hello(self) -> None:
        await self._socket.send_multipart(encode_hello(Hello(self.actor, self.sent)))

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            try:
                message = decode(frames)
            except WireError as exc:
                logger.warning("actor %s ignored a malformed message: %s", self.actor, exc)
                continue
            if isinstance(message, Credit):
                async with self._credit:
                    self.limit = message.limit
                    self._credit.notify_all()
            elif isinstance(message, Chunk):
                self._chunk.put_nowait(message)
            elif isinstance(message, AdapterNotice):
                if self.latest is None or message.version > self.latest.version:
                    self.latest = message
                    self.notices.put_nowait(message)
            else:
                logger.warning("actor %s ignored a %s message", self.actor, type(message).__name__)
