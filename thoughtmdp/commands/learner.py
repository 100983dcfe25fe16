"""The ``thoughtmdp learner`` command: validate the settings, then start the learner.

Nothing here imports torch: a bad key or value is reported before any heavy import.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.arguments import add_settings_arguments
from thoughtmdp.settings.learner import LearnerConfig, check_ready
from thoughtmdp.settings.loader import load


def add_parser(commands: Any) -> None:
    """Add the ``learner`` sub-command to an argparse sub-parsers object."""
    parser = commands.add_parser(
        "learner",
        help="train the LoRA policy on episodes streamed from actors; publish adapter versions",
        description=(
            "Settings come from defaults < --config YAML < KEY=VALUE overrides (see "
            "thoughtmdp.settings.learner.LearnerConfig). Several ranks: start it under the "
            "DeepSpeed launcher with deepspeed.zero_stage=2 or 3, e.g. `deepspeed --num_gpus 2 "
            "--no_local_rank $(which thoughtmdp) learner bind=tcp://127.0.0.1:5555 "
            "deepspeed.zero_stage=3 ...` (write bind=, not --bind: the launcher would take "
            "--bind for its own --bind_cores_to_rank)."
        ),
    )
    parser.add_argument("--bind", help="address to bind for actors, e.g. tcp://127.0.0.1:5555")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest complete checkpoint"
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )
    add_settings_arguments(parser, LearnerConfig, "model=PATH optim.lr=1e-5")


def settings_from_args(args: argparse.Namespace) -> LearnerConfig:
    """The validated settings a ``learner`` command line describes.

    Raises:
        ConfigError: For an unknown key, a bad value or a missing model path.
    """
    config = load(LearnerConfig, args.config, args.overrides)
    changes: dict[str, Any] = {}
    if args.bind:
        changes["bind"] = args.bind
    if args.resume:
        changes["resume"] = True
    if args.allow_remote:
        changes["allow_remote"] = True
    config = dataclasses.replace(config, **changes)
    check_ready(config)
    return config


def run(args: argparse.Namespace) -> int:
    """Run the ``learner`` command; returns the exit code (2 for bad settings)."""
    try:
        config = settings_from_args(args)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp learner: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from thoughtmdp.learners.process import run_learner

    code: int = run_learner(config)
    return code
