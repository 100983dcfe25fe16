"""The ``thoughtmdp actor`` command: validate the settings, then start the actor.

Nothing here imports torch: a bad key or value is reported before any heavy import.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.actor import ActorConfig, check_ready
from thoughtmdp.settings.arguments import add_settings_arguments
from thoughtmdp.settings.loader import load


def add_parser(commands: Any) -> None:
    """Add the ``actor`` sub-command to an argparse sub-parsers object.

    Args:
        commands: The object ``ArgumentParser.add_subparsers`` returned.
    """
    parser = commands.add_parser(
        "actor",
        help="sample episodes with the latest adapter and stream them to the learner",
        description=(
            "Settings come from defaults < --config YAML < KEY=VALUE overrides (see "
            "thoughtmdp.settings.actor.ActorConfig). Start one actor per shard, e.g. "
            "`thoughtmdp actor --learner tcp://10.0.0.1:5555 model=/models/Qwen2.5 "
            "shard=1 num_shards=4`; a restarted actor with the same name rejoins."
        ),
    )
    parser.add_argument("--learner", help="the learner's address, e.g. tcp://127.0.0.1:5555")
    add_settings_arguments(parser, ActorConfig, "model=PATH task=math")


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
    """Run the ``actor`` command.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (2 for bad settings).
    """
    try:
        config = settings_from_args(args)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp actor: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from thoughtmdp.agents.process import run_actor

    code: int = run_actor(config)
    return code
