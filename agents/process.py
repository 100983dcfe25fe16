"""The actor process: a backend, a task and an episode builder streaming to the learner."""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from thoughtmdp.agents.actor import Actor, shard_order
from thoughtmdp.episodes.builder import EpisodeBuilder
from thoughtmdp.errors import ConfigError
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.mdp.task import VerifiableTask, make_task
from thoughtmdp.settings.actor import ActorConfig, resolve_backend
from thoughtmdp.training.lifeline import watch_parent
from thoughtmdp.transport import EpisodeSender
from thoughtmdp.types import Problem

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_S = 10.0  # to close the engine once the launcher is gone
_interrupted: list[int] = []


def _interrupt_once(signum: int, frame: object) -> None:
    if not _interrupted:
        _interrupted.append(signum)
        raise KeyboardInterrupt


def run_actor(config: ActorConfig) -> int:
    """Run the actor until ``config.max_episodes`` were sent (the ``thoughtmdp actor`` command).

    Args:
        config: Validated actor settings.

    Returns:
        The process exit code (0 also when stopped by SIGINT or SIGTERM).
    """
    # SIGTERM and SIGHUP (how `thoughtmdp train` ends a run) unwind like Ctrl-C, so the
    # engine closes; only the first one raises, so a second cannot cut the closing short.
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt_once)
    watch_parent(STOP_GRACE_S)
    task = make_task(config.task, **config.task_options)
    backend = make_backend(config)
    try:
        asyncio.run(stream_episodes(config, task, backend))
    except KeyboardInterrupt:
        logger.info("actor %s stopped", config.actor_name)
    finally:
        backend.close()
        task.close()
    return 0


def make_backend(config: ActorConfig) -> Any:
    """The policy backend ``config.backend`` names, on the base model (version 0).

    Args:
        config: Actor settings.

    Returns:
        A :class:`~thoughtmdp.agents.backends.vllm.VLLMBackend` or
        :class:`~thoughtmdp.agents.backends.transformers.TransformersBackend`.
    """
    if resolve_backend(config) == "vllm":
        from thoughtmdp.agents.backends.vllm import VLLMBackend

        return VLLMBackend(
            config.model,
            lora_rank=config.lora_rank,
            max_lag=config.max_lag,
            engine_options=config.engine_options,
        )
    from thoughtmdp.agents.backends.transformers import TransformersBackend

    return TransformersBackend(
        config.model, device=config.device, max_batch_size=config.max_batch_size
    )


async def stream_episodes(config: ActorConfig, task: VerifiableTask, backend: Any) -> None:
    """Connect to the learner and send episodes until ``config.max_episodes``.

    Args:
        config: Actor settings.
        task: The task problems come from.
        backend: The policy backend (it loads the learner's adapters).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    make_env = partial(
        ThoughtMDPEnv,
        task,
        split=config.split,
        tokenizer=tokenizer,
        chat_template=config.chat_template,
        max_thoughts=config.max_thoughts,
        max_total_tokens=config.max_total_tokens,
    )
    builder = EpisodeBuilder(
        task, backend, make_env, config.episode.resolve(), config.sampling.params()
    )
    problems = within_prompt_cap(make_env(), config.max_prompt_tokens)
    order = shard_order(problems, config.shard, config.num_shards, config.seed)
    root = config.adapter_root or Path(tempfile.mkdtemp(prefix="thoughtmdp-adapters-"))
    root.mkdir(parents=True, exist_ok=True)
    name = config.actor_name
    sender = EpisodeSender(config.learner, name, config.hello_interval, curve=config.curve())
    async with sender:
        logger.info("actor %s connected to %s (shard %d)", name, config.learner, config.shard)
        actor = Actor(
            builder,
            sender,
            order,
            config.in_flight,
            config.max_lag,
            root,
            config.seed,
            config.batch_barrier,
            config.fallback_warn_rate,
            pin_version=config.pin_version,
        )
        await actor.run(config.max_episodes)
        logger.info("actor %s sent %d episodes", name, actor.sent)


def within_prompt_cap(env: ThoughtMDPEnv, max_prompt_tokens: int | None) -> list[Problem]:
    """The env's problems whose prompt fits ``max_prompt_tokens``; logs how many were left out.

    Raises:
        ConfigError: If no problem fits.
    """
    problems = list(env.problems)
    if max_prompt_tokens is None:
        return problems
    kept = [p for p in problems if len(env.encode_prompt(p) or ()) <= max_prompt_tokens]
    if not kept:
        raise ConfigError(
            f"max_prompt_tokens: all {len(problems)} problems of split {env.split!r} have "
            f"longer prompts than {max_prompt_tokens} tokens"
        )
    if len(kept) < len(problems):
        logger.warning(
            "%d of %d problems have prompts over max_prompt_tokens=%d and are left out",
            len(problems) - len(kept),
            len(problems),
            max_prompt_tokens,
        )
    return kept
