"""The learner process: episodes from actors in, adapter versions out, checkpoints on the way.

Each step: rank 0 takes a step's episodes from the :class:`EpisodeReceiver` (applying the
staleness rule) and hands them to every rank; the trainer updates; the adapter is saved as
the next version and its notice published; every ``checkpoint_every`` steps a checkpoint is
written. Only rank 0 opens a socket or writes metrics.

SIGTERM, SIGINT or SIGHUP stops the learner between steps: a step that is still collecting
episodes is abandoned (no update from part of a batch), a checkpoint is written and the
process exits with status 0. Rank 0 tells the other ranks by handing them an empty batch.
A rank that loses the others (one died or hangs) prints why and exits with status 1.
Started by ``thoughtmdp train``, the learner also stops when the launcher dies
(:mod:`thoughtmdp.training.lifeline`).

A resumed learner announces the adapter version it resumed at, so that actors start from it
(each actor's hello is answered with it). With ``max_lag`` set it also skips every episode
sampled more than ``max_lag`` versions before that version, ``stale=reweight`` or not: such
an episode comes from a policy the run moved past before it stopped.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from thoughtmdp.errors import ConfigError, ThoughtMDPError
from thoughtmdp.learners.batching import PaddedBatch
from thoughtmdp.learners.checkpoint import (
    agreed_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    remove_partial,
    save_checkpoint,
)
from thoughtmdp.learners.episode_log import EpisodeLog, pick_signal_episode, signal_map
from thoughtmdp.learners.metrics_log import MetricsLog
from thoughtmdp.learners.model.distributed import exit_on_peer_loss
from thoughtmdp.learners.model.policy import DTYPES
from thoughtmdp.learners.publish import AdapterPublisher
from thoughtmdp.learners.stream import BatchAssembler, EpisodeSource, StopRequested
from thoughtmdp.learners.trainer import Trainer, build_trainer
from thoughtmdp.settings.convert import to_dict
from thoughtmdp.settings.learner import LearnerConfig, resume_mismatches
from thoughtmdp.training.lifeline import watch_parent
from thoughtmdp.types import Episode
from thoughtmdp.wire import AdapterNotice

if TYPE_CHECKING:
    from thoughtmdp.transport import EpisodeReceiver

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_S = 30.0  # to finish the running step and checkpoint once the launcher is gone


def run_learner(config: LearnerConfig) -> int:
    """Run the learner until ``config.max_steps`` (the ``thoughtmdp learner`` command).

    Args:
        config: Validated learner settings.

    Returns:
        The process exit code.
    """
    stop = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    watch_parent(STOP_GRACE_S)
    trainer = build_trainer(config)
    loop = LearnerLoop(config, trainer, stop=stop)
    with exit_on_peer_loss("thoughtmdp learner"):
        try:
            loop.run()
        finally:
            loop.close()
    return 0


class LearnerLoop:
    """Wires a trainer to the episode stream, the adapter publisher and checkpoints.

    Args:
        config: Learner settings.
        trainer: The trainer (every rank has one).
        source: Episode source of rank 0; default: an ``EpisodeReceiver`` on ``config.bind``.
        stop: Set to stop between steps (default: a new event).
    """

    def __init__(
        self,
        config: LearnerConfig,
        trainer: Trainer,
        source: EpisodeSource | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config, self.trainer = config, trainer
        self.rank0 = trainer.engine.rank == 0
        self.step = 0
        self.receiver: EpisodeReceiver | None = None
        self.log: MetricsLog | None = None
        self.episode_log: EpisodeLog | None = None
        self.last_notice: AdapterNotice | None = None
        self.publisher = AdapterPublisher(
            config.run_dir / "adapters", config.publish_inline, dtype=DTYPES[config.dtype]
        )
        self.version = self.publisher.latest_version()
        self.consumed: Counter[str] = Counter()
        self.stop = stop or threading.Event()
        self.resumed_at: int | None = None
        self._prepare()
        self.assembler: BatchAssembler | None = None
        if self.rank0:  # only rank 0 talks to actors
            self.assembler = BatchAssembler(
                source or self._receiver(), config.prompts_per_step, config.max_lag,
                config.stale == "skip", self.consumed, self.stop, self._oldest_usable(),
            )  # fmt: skip
            self.log = MetricsLog.for_config(config)
            self.episode_log = EpisodeLog(config.run_dir)
            self._announce_resumed_version()

    def _oldest_usable(self) -> int:
        """Oldest policy version an episode may start from (after a resume; 0 otherwise)."""
        if self.resumed_at is None or self.config.max_lag is None:
            return 0
        return max(0, self.resumed_at - self.config.max_lag)

    def _announce_resumed_version(self) -> None:
        """Tell actors (now, and each one that says hello later) the version resumed at."""
        if self.resumed_at is None or not self.publisher.folder(self.version).is_dir():
            return
        notice = self.publisher.notice(self.version)
        if self.receiver is not None:
            self.receiver.publish(notice, self.publisher.folder(self.version))
        self.last_notice = notice

    def _receiver(self) -> EpisodeSource:
        from thoughtmdp.transport import EpisodeReceiver

        config = self.config
        receiver = EpisodeReceiver(
            config.bind, config.window, allow_remote=config.allow_remote, curve=config.curve()
        )
        logger.info("learner listening on %s", receiver.address)
        self.receiver = receiver
        return receiver

    def _prepare(self) -> None:
        """Clean up after a crash, then resume or refuse to overwrite an earlier run."""
        run_dir = self.config.run_dir
        engine = self.trainer.engine
        single = engine.world_size == 1
        latest = latest_checkpoint(run_dir) if single else agreed_checkpoint(run_dir, engine)
        if latest is not None and not self.config.resume:
            raise ThoughtMDPError(
                f"{run_dir} holds checkpoints (latest {latest.name}); pass --resume to "
                "continue that run or choose another run_dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_partial(run_dir)  # every rank: its run_dir may be its own disk
        if self.rank0:
            text = json.dumps(to_dict(self.config), indent=2, default=str)
            (run_dir / "config.json").write_text(text + "\n")
        if latest is not None:
            self._restore(latest)
        elif self.config.resume:
            logger.warning("no complete checkpoint in %s; starting from scratch", run_dir)

    def _restore(self, path: Path) -> None:
        saved = json.loads((path / "state.json").read_text())
        differing = resume_mismatches(saved["config"], self.config)
        if differing:
            raise ConfigError(
                f"cannot resume from {path}: {', '.join(differing)} differ from the "
                "checkpoint's config; restore them or start a new run_dir"
            )
        load_checkpoint(path, self.trainer.engine)
        self.step = self.trainer.steps = int(saved["step"])
        self.version = max(int(saved["version"]), self.version)
        self.consumed.update(saved["consumed"])
        self.resumed_at = self.version
        logger.info("resumed from %s at step %d, version %d", path, self.step, self.version)

    def run(self) -> None:
        """Run steps until ``max_steps`` (forever without it) or until :attr:`stop` is set."""
        while self.config.max_steps is None or self.step < self.config.max_steps:
            try:
                self.run_step()
            except StopRequested as exc:
                logger.info("stopping at step %d: %s", self.step, exc)
                every = self.config.checkpoint_every
                if every and self.step and self.step % every:
                    self._checkpoint()
                return

    def run_step(self) -> dict[str, float]:
        """One step: collect, update, publish, maybe checkpoint; returns its metrics.

        Raises:
            StopRequested: If :attr:`stop` was set before the step's episodes were complete.
        """
        start = time.perf_counter()
        episodes, metrics = self._collect()
        batch = self.trainer.pad(episodes)
        self._map_signal(batch)
        metrics.update(self.trainer.step(batch))
        published = time.perf_counter()
        self._publish()
        metrics["timing_s/update_weights"] = time.perf_counter() - published
        self.step += 1
        every = self.config.checkpoint_every
        if every and self.step % every == 0:
            self._checkpoint()
        elapsed = time.perf_counter() - start
        metrics["timing_s/step"] = elapsed
        world = self.trainer.engine.world_size
        metrics["perf/throughput"] = metrics["perf/total_num_tokens"] / elapsed / world
        metrics["learner/version"] = float(self.version)
        if self.log is not None and self.episode_log is not None:
            self.log.write(self.step, metrics)
            self.episode_log.write_episodes(self.step, episodes)
        return metrics

    def _map_signal(self, batch: PaddedBatch) -> None:
        """Every ``signal_map_every`` steps, log one episode's per-thought gradient signal."""
        every = self.config.signal_map_every
        if not every or self.step % every:
            return
        index = pick_signal_episode(batch.episodes)  # every rank has the same episodes
        if index is None:
            return
        one = batch.select(index, index + 1)
        found = signal_map(
            self.trainer.engine,
            one,
            self.config.loss.temperature,
            self.config.rollouts_per_microbatch,
        )
        if self.episode_log is not None:
            self.episode_log.write_signal_map(self.step + 1, found)

    def _collect(self) -> tuple[list[Episode], dict[str, float]]:
        engine = self.trainer.engine
        episodes: list[Episode] | None = None
        metrics: dict[str, float] = {}
        if self.assembler is not None:
            try:
                episodes, metrics = self.assembler.next_batch(self.version)
            except StopRequested:
                episodes = []  # an empty batch tells the other ranks to stop too
        if engine.world_size > 1:
            from thoughtmdp.learners.model.distributed import broadcast_episodes

            episodes = broadcast_episodes(episodes, engine.device)
        if not episodes:
            raise StopRequested("asked to stop")
        return episodes, metrics

    def _publish(self) -> None:
        engine = self.trainer.engine
        state = engine.adapter_state()  # collective under ZeRO-3: every rank takes part
        self.version += 1
        if self.rank0:
            notice = self.publisher.publish(engine.model, state, self.version)
            if self.receiver is not None:
                self.receiver.publish(notice, self.publisher.folder(self.version))
            self.last_notice = notice

    def _checkpoint(self) -> None:
        state = {
            "step": self.step,
            "version": self.version,
            "consumed": dict(self.consumed),
            "config": to_dict(self.config),
        }
        save_checkpoint(
            self.config.run_dir, self.step, self.trainer.engine, state, self.config.keep_checkpoints
        )

    def close(self) -> None:
        """Close the socket and the metric files."""
        if self.receiver is not None:
            self.receiver.close()
        if self.log is not None:
            self.log.close()
        if self.episode_log is not None:
            self.episode_log.close()
