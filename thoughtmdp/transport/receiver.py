"""The learner's end: a ROUTER socket on its own thread, with credit-based flow control.

Flow control: the learner tells each actor a cumulative *limit*, the number of episodes it
may have sent in all: episodes seen from it, plus ``window``, minus its episodes still in the
queue. A ``Hello`` carries the actor's own count of episodes sent, which resynchronises the
count after a reconnect or a learner restart; because limits are cumulative, a repeated hello
or credit never grants extra room. Taking an episode out of the queue raises its actor's
limit by one. So at most ``window`` episodes per actor are queued or in flight, the queue is
bounded, and when the learner is slow the actors wait: nothing is dropped. An episode from an
actor that has not said hello (e.g. sent just before a learner restart) is queued while the
queue has room (``max_queue``) and otherwise rejected, logged and counted.

Adapter notices go to every actor that said hello; a late joiner gets the latest one in
reply to its hello, so a missed notice is repaired the next time the actor says hello. A
notice that lists file sizes instead of carrying the files is served in chunks on request
(:mod:`thoughtmdp.transport.serving`), between episodes.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thoughtmdp.types import Episode
from thoughtmdp.wire import (
    MAX_MESSAGE_BYTES,
    AdapterNotice,
    ChunkRequest,
    Credit,
    Hello,
    WireError,
    decode,
    encode_adapter,
    encode_chunk,
    encode_credit,
)

from .security import CurveServer, apply_server_keys, check_bind_address
from .serving import ServedAdapters

logger = logging.getLogger(__name__)
POLL_MS = 20


@dataclass
class ReceiverStats:
    """Counters of the receiving loop (read them from any thread)."""

    received: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)


class EpisodeReceiver:
    """Receives episodes from actors; publishes adapter notices to them.

    Args:
        address: Where to bind, e.g. ``"tcp://127.0.0.1:0"`` (port 0 picks a free port).
        window: Credits per actor (episodes queued or in flight).
        max_queue: Bound of the queue, credited or not.
        allow_remote: Allow binding an address reachable from other hosts.
        curve: CURVE keys; without them the socket is unauthenticated.
        max_message_bytes: Larger messages are refused by the socket.
    """

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:0",
        window: int = 4,
        max_queue: int = 256,
        allow_remote: bool = False,
        curve: CurveServer | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        check_bind_address(address, allow_remote)
        self.window, self.max_queue, self.curve = window, max_queue, curve
        self.max_message_bytes = max_message_bytes
        self.stats = ReceiverStats()
        self._queue: queue.Queue[tuple[str, Episode]] = queue.Queue()
        self._queued: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()
        self._outbox: collections.deque[tuple[bytes, list[Any]]] = collections.deque()
        self._actors: dict[str, bytes] = {}
        self._latest: AdapterNotice | None = None
        self._served = ServedAdapters()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.address = address
        self._thread = threading.Thread(target=self._run, name="episode-receiver", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    # -- learner side --------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> tuple[str, Episode]:
        """The next ``(actor, episode)``; returns a credit to that actor.

        Raises:
            queue.Empty: If nothing arrives within ``timeout`` seconds.
        """
        actor, episode = self._queue.get(timeout=timeout)
        with self._lock:
            self._queued[actor] -= 1
            identity = self._actors.get(actor)
            credit = self._credit(actor)
        if identity is not None:
            self._outbox.append((identity, encode_credit(credit)))
        return actor, episode

    def publish(self, notice: AdapterNotice, folder: Path | None = None) -> None:
        """Send an adapter notice to every known actor (and to later joiners).

        Args:
            notice: The notice.
            folder: Where the files a notice lists by size are (served to actors in chunks).

        Raises:
            ValueError: If the notice lists file sizes but no ``folder`` is given.
        """
        if notice.sizes and folder is None:
            raise ValueError(f"adapter v{notice.version} lists file sizes: pass its folder")
        frames = encode_adapter(notice)
        with self._lock:  # actors that say hello later get it in reply
            if folder is not None and notice.sizes:
                self._served.add(notice, folder)
            self._latest = notice
            self._outbox.extend((identity, frames) for identity in self._actors.values())

    def qsize(self) -> int:
        """Episodes waiting to be taken."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stop the thread and close the socket (pending outbound messages are dropped)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> EpisodeReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the socket thread ---------------------------------------------------------------

    def _run(self) -> None:
        import zmq

        context = zmq.Context()
        socket = context.socket(zmq.ROUTER)
        authenticator = None
        try:
            socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
            socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted actor takes its name back
            if self.curve is not None:
                authenticator = _start_authenticator(context, self.curve)
                apply_server_keys(socket, self.curve)
            socket.bind(self.address)
            self.address = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException as exc:
            self._error = exc
            socket.close(linger=0)
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(socket, zmq)
        finally:
            socket.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            context.term()

    def _loop(self, socket: Any, zmq: Any) -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(POLL_MS):
                while socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    frames = socket.recv_multipart(copy=False)
                    self._handle(frames[0].bytes, [f.buffer for f in frames[1:]])
            self._flush(socket, zmq)

    def _flush(self, socket: Any, zmq: Any) -> None:
        while self._outbox:
            identity, frames = self._outbox.popleft()
            try:
                socket.send_multipart([identity, *frames], flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                logger.warning("could not send to actor %r now (its queue is full)", identity)

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        try:
            message = decode(frames, self.max_message_bytes)
        except WireError as exc:
            self._reject("malformed", f"rejected a message from {identity!r}: {exc}")
            return
        if isinstance(message, Hello):
            self._hello(identity, _actor_name(identity), message.sent)
        elif isinstance(message, Episode):
            self._episode(_actor_name(identity), message)
        elif isinstance(message, ChunkRequest):
            with self._lock:
                chunk = self._served.answer(message)
            self._outbox.append((identity, encode_chunk(chunk)))
        else:
            kind = type(message).__name__
            self._reject("foreign", f"rejected a {kind} message from {identity!r}")

    def _hello(self, identity: bytes, actor: str, sent: int) -> None:
        with self._lock:
            self._actors[actor] = identity
            self._seen[actor] = sent
            credit = self._credit(actor)
            latest = self._latest
        if latest is not None:
            self._outbox.append((identity, encode_adapter(latest)))
        self._outbox.append((identity, encode_credit(credit)))

    def _credit(self, actor: str) -> Credit:
        """The actor's limit; call with the lock held."""
        return Credit(self._seen[actor] + max(0, self.window - self._queued[actor]))

    def _episode(self, actor: str, episode: Episode) -> None:
        with self._lock:
            if actor not in self._actors and self._queue.qsize() >= self.max_queue:
                full = True
            else:
                full = False
                self._queued[actor] += 1
                self._seen[actor] += 1
        if full:
            self._reject("queue_full", f"queue full: rejected an uncredited episode of {actor!r}")
            return
        self.stats.received[actor] += 1
        self._queue.put((actor, episode))

    def _reject(self, reason: str, message: str) -> None:
        self.stats.rejected[reason] += 1
        logger.warning(message)


def _actor_name(identity: bytes) -> str:
    """Actors set their socket identity to their name; anonymous peers get a hex name."""
    try:
        name = identity.decode()
    except UnicodeDecodeError:
        return identity.hex()
    return name if name.isprintable() and name else identity.hex()


def _start_authenticator(context: Any, curve: CurveServer) -> Any:
    from zmq.auth.thread import ThreadAuthenticator

    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(curve.authorized_dir))
    return authenticator
