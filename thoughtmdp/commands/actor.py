"""The ``thoughtmdp actor`` command: validate the settings, then start the actor.

Nothing here imports torch: a bad key or value is reported before any heavy import.
"""

from __future__ import annotations

import argparse
import dataclasses

from thoughtmdp.commands import Command, log_to_stderr
from thoughtmdp.settings.actor import ActorConfig, check_ready
from thoughtmdp.settings.loader import load


def arguments(parser: argparse.ArgumentParser) -> None:
    """The actor's flag; its settings come with ``-c`` and ``KEY=VALUE``."""
    parser.add_argument("--learner", help="the learner's address, e.g. tcp://127.0.0.1:5555")


def settings_from_args(args: argparse.Namespace) -> ActorConfig:
    """The validated settings an ``actor`` command line describes.

    Args:
        args: The parsed command line.

    Returns:
        The actor's settings.

    Raises:
        ConfigError: For an unknown key, a bad value, a missing model path or a missing vLLM.
    """
    config = load(ActorConfig, args.config, args.overrides)
    if args.learner:
        config = dataclasses.replace(config, learner=args.learner)
    check_ready(config)
    return config


def run(args: argparse.Namespace) -> int:
    """Run the ``actor`` command; returns the exit code."""
    config = settings_from_args(args)
    log_to_stderr()
    from thoughtmdp.agents.process import run_actor

    code: int = run_actor(config)
    return code


COMMAND = Command(
    "actor",
    help="sample episodes with the latest adapter and stream them to the learner",
    run=run,
    arguments=arguments,
    description=(
        "Settings come from defaults < --config YAML < KEY=VALUE overrides (see "
        "thoughtmdp.settings.actor.ActorConfig). Start one actor per shard, e.g. "
        "`thoughtmdp actor --learner tcp://10.0.0.1:5555 model=/models/Qwen2.5 "
        "shard=1 num_shards=4`; a restarted actor with the same name rejoins."
    ),
    settings=ActorConfig,
    example="model=PATH task=math",
)
