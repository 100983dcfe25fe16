"""The actor loop: many episodes in flight, each sent the moment it is finished.

By default there is no batch barrier: every episode is its own task (whose reset group starts
as soon as its seed and ``h*`` are known), and a new episode starts whenever one finishes. The
actor stops starting episodes while its adapter is more than ``max_lag`` versions behind the
learner's latest notice, and resumes once it has loaded a newer one.

With ``batch_barrier`` the actor is the synchronous baseline instead: it builds ``in_flight``
episodes with one adapter, waits for all of them, then waits for a newer adapter before it
starts the next batch, so generation and training never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from thoughtmdp.agents.backends.adapters import LoadsAdapters, apply_notice
from thoughtmdp.episodes.builder import EpisodeBuilder
from thoughtmdp.transport import EpisodeSender
from thoughtmdp.types import Episode, Problem, ResetDecision

logger = logging.getLogger(__name__)
JOIN_POLL_S = 0.05


def shard_order(
    problems: Sequence[Problem], shard: int, num_shards: int, seed: int
) -> Iterator[str]:
    """Problem ids of one shard, reshuffled every pass, forever.

    >>> problems = [Problem(f"train/{i}", "") for i in range(6)]
    >>> order = shard_order(problems, shard=1, num_shards=2, seed=0)
    >>> sorted(next(order) for _ in range(3))
    ['train/1', 'train/3', 'train/5']
    """
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..{num_shards - 1}, got {shard}")
    ids = [p.id for p in problems[shard::num_shards]]
    if not ids:
        raise ValueError(f"shard {shard} of {num_shards} holds no problems")
    rng = np.random.default_rng(seed)
    while True:
        yield from (ids[i] for i in rng.permutation(len(ids)))


class FallbackWatch:
    """Warns, once per crossing, when too many recent reset decisions took a fallback.

    A reset policy that cannot name a step (an unparsable or ambiguous localiser answer, an
    oracle without an answer) takes its ``fallback``; with the default ``uniform`` SRPO then
    quietly becomes RRPO. The watch keeps the last ``window`` seed chains and logs a warning
    when the share that fell back first exceeds ``threshold`` (the window full), then stays
    quiet until the share is back at or under it.

    Args:
        threshold: Largest share of fallbacks that passes without a warning (1 never warns).
        window: Seed chains the share is taken over.

    >>> watch = FallbackWatch(threshold=0.5, window=2)
    >>> watch.observe([ResetDecision(None, "self", "?", "unparsable", "skip")] * 2)
    True
    >>> watch.observe([ResetDecision(None, "self", "?", "unparsable", "skip")])
    False
    """

    def __init__(self, threshold: float = 0.2, window: int = 50) -> None:
        self.threshold = threshold
        self.recent: deque[ResetDecision] = deque(maxlen=window)
        self.warned = False

    def observe(self, decisions: Sequence[ResetDecision]) -> bool:
        """Add one episode's decisions; return whether this call logged a warning."""
        self.recent.extend(decisions)
        if len(self.recent) < (self.recent.maxlen or 0) or not decisions:
            return False
        fell_back = [d for d in self.recent if d.fallback is not None]
        rate = len(fell_back) / len(self.recent)
        if rate <= self.threshold:
            self.warned = False
            return False
        if self.warned:
            return False
        self.warned = True
        kinds = Counter(d.fallback for d in fell_back)
        causes = Counter(d.parse_status for d in fell_back)
        logger.warning(
            "reset policy %r fell back on %d of the last %d seed chains (%.0f%%, over "
            "fallback_warn_rate %.0f%%): fallbacks %s, localiser answers %s; resets are no "
            "longer where the policy points (see reset/policy_fallback_rate; check the "
            "localiser prompt or max_tokens, or set the reset policy's fallback option)",
            fell_back[-1].policy,
            len(fell_back),
            len(self.recent),
            100 * rate,
            100 * self.threshold,
            dict(sorted(kinds.items())),
            dict(sorted(causes.items())),
        )
        return True


class Actor:
    """Builds episodes and streams them to the learner.

    Args:
        builder: Builds one episode per problem id (its backend must load adapters).
        sender: A connected :class:`~thoughtmdp.transport.EpisodeSender`.
        problem_ids: The order to draw problems in (e.g. :func:`shard_order`).
        in_flight: Episodes built concurrently.
        max_lag: Most versions the actor's adapter may trail the learner's latest.
        adapter_root: Where inline adapters are written.
        seed: Base seed; episode ``k`` uses ``seed + k``.
        batch_barrier: Build episodes in batches of ``in_flight``, each with an adapter
            newer than the last batch's (the learner must step on exactly those episodes).
        fallback_warn_rate: Share of recent reset decisions that may take the reset
            policy's fallback before a warning is logged (see :class:`FallbackWatch`).
        pin_version: Sample every request of an episode (seed, localisation, suffixes) with
            the adapter version it started with, even when a newer one loads meanwhile
            (the backend's ``pinned()``); the old version is freed when its last episode ends.
    """

    def __init__(
        self,
        builder: EpisodeBuilder,
        sender: EpisodeSender,
        problem_ids: Iterator[str],
        in_flight: int = 8,
        max_lag: int = 1,
        adapter_root: Path | None = None,
        seed: int = 0,
        batch_barrier: bool = False,
        fallback_warn_rate: float = 0.2,
        pin_version: bool = True,
    ) -> None:
        self.builder, self.sender, self.problem_ids = builder, sender, problem_ids
        self.in_flight, self.max_lag, self.seed = in_flight, max_lag, seed
        self.batch_barrier, self.pin_version = batch_barrier, pin_version
        self.adapter_root = adapter_root or Path.cwd()
        self.backend: LoadsAdapters = builder.backend
        self.started = self.sent = 0
        self.fallback_watch = FallbackWatch(fallback_warn_rate)
        self._fresh = asyncio.Event()
        self._handled = -1  # version of the newest notice applied or refused

    async def run(self, max_episodes: int | None = None) -> None:
        """Stream episodes until ``max_episodes`` were sent (forever when ``None``).

        The first episode starts once the learner has answered the actor's hello, and, when
        the answer names an adapter (a learner that resumed or has been training), once that
        adapter is loaded: a (re)started actor never samples with an older policy first.
        """
        watcher = asyncio.create_task(self._follow_notices())
        try:
            await self._join()
            if self.batch_barrier:
                await self._in_batches(max_episodes)
            else:
                await self._streaming(max_episodes)
        finally:
            watcher.cancel()

    async def _streaming(self, max_episodes: int | None) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while max_episodes is None or self.started < max_episodes:
                while len(running) >= self.in_flight:
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # an episode that failed is a bug: surface it
                await self._wait_until(lambda: self.lag() <= self.max_lag)
                running.add(
                    asyncio.create_task(self._episode(next(self.problem_ids), self.started))
                )
                self.started += 1
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

    async def _in_batches(self, max_episodes: int | None) -> None:
        while max_episodes is None or self.started < max_episodes:
            size = self.in_flight
            if max_episodes is not None:
                size = min(size, max_episodes - self.started)
            version = self.backend.policy_version
            first, self.started = self.started, self.started + size
            ids = [next(self.problem_ids) for _ in range(size)]
            await asyncio.gather(*(self._episode(p, first + k) for k, p in enumerate(ids)))
            if max_episodes is None or self.started < max_episodes:
                await self._wait_until(partial(self._newer_than, version))

    async def _join(self) -> None:
        """Wait for the learner's first answer, and for the adapter it names to load."""
        while self.sender.limit == 0 and self.sender.latest is None:
            await asyncio.sleep(JOIN_POLL_S)
        latest = self.sender.latest
        if latest is not None:  # loaded, or refused (then the actor keeps what it has)
            await self._wait_until(lambda: self._handled >= latest.version)

    def _newer_than(self, version: int) -> bool:
        return self.backend.policy_version > version

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Wait, reloading adapters as notices arrive, until ``ready()`` holds."""
        while not ready():
            self._fresh.clear()
            await self._fresh.wait()

    def lag(self) -> int:
        """Versions between the learner's latest notice and the loaded adapter."""
        latest = self.sender.latest
        return 0 if latest is None else latest.version - self.backend.policy_version

    async def _episode(self, problem_id: str, index: int) -> None:
        pin = self.backend.pinned() if self.pin_version else contextlib.nullcontext()
        async with pin:  # the builder's tasks inherit the pin through their context
            episode: Episode = await self.builder.build(problem_id, seed=self.seed + index)
        self.fallback_watch.observe([r.decision for r in episode.resets])
        await self.sender.send(episode)
        self.sent += 1

    async def _follow_notices(self) -> None:
        while True:
            notice = await self.sender.notices.get()
            if self.sender.latest is not None and notice.version < self.sender.latest.version:
                continue  # a newer one is queued behind it
            await apply_notice(self.backend, notice, self.adapter_root, self.sender.pull_adapter)
            self._handled = notice.version
            self._fresh.set()
