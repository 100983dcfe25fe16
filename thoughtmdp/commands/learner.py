"""The ``thoughtmdp learner`` command: validate the settings, then start the learner.

Nothing here imports torch: a bad key or value is reported before any heavy import.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from thoughtmdp.commands import Command, log_to_stderr
from thoughtmdp.settings.learner import LearnerConfig, check_ready
from thoughtmdp.settings.loader import load


def arguments(parser: argparse.ArgumentParser) -> None:
    """The learner's flags; its settings come with ``-c`` and ``KEY=VALUE``."""
    parser.add_argument("--bind", help="address to bind for actors, e.g. tcp://127.0.0.1:5555")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest complete checkpoint"
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )


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
    """Run the ``learner`` command; returns the exit code."""
    config = settings_from_args(args)
    log_to_stderr()
    from thoughtmdp.learners.process import run_learner

    code: int = run_learner(config)
    return code


COMMAND = Command(
    "learner",
    help="train the LoRA policy on episodes streamed from actors; publish adapter versions",
    run=run,
    arguments=arguments,
    description=(
        "Settings come from defaults < --config YAML < KEY=VALUE overrides (see "
        "thoughtmdp.settings.learner.LearnerConfig). Several ranks: start it under the "
        "DeepSpeed launcher with deepspeed.zero_stage=2 or 3, e.g. `deepspeed --num_gpus 2 "
        "--no_local_rank $(which thoughtmdp) learner bind=tcp://127.0.0.1:5555 "
        "deepspeed.zero_stage=3 ...` (write bind=, not --bind: the launcher would take "
        "--bind for its own --bind_cores_to_rank)."
    ),
    settings=LearnerConfig,
    example="model=PATH optim.lr=1e-5",
)
