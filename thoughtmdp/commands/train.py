"""The ``thoughtmdp train`` command (no torch until training starts).

``-c`` takes a YAML file or the name of a shipped config (``thoughtmdp config list``); then
``key=value`` overrides apply. The config is parsed and checked before anything heavy is
imported, so a typo is reported at once. ``--resume RUN_DIR`` continues a stopped run from
its newest checkpoint with the config it was started with (overrides still apply, e.g.
``learner.max_steps=300``).

Exit codes: 0 done, 1 a process died or no step was trained, 2 bad settings or run folder,
128 + the signal number (130 for SIGINT, 143 for SIGTERM) after a clean stop.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from thoughtmdp.commands import Command
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import TrainConfig, check_not_derived


def load_train_config(config: str | None, overrides: list[str]) -> TrainConfig:
    """Defaults < the config file (or shipped config) < overrides, checked.

    Raises:
        ConfigError: For a missing file, an unknown key, a bad value or a derived key.
    """
    train = load(TrainConfig, config, overrides)
    check_not_derived(train)
    return train


def resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume RUN_DIR``."""
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        type=Path,
        help="continue the run in RUN_DIR from its newest checkpoint, with its config",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp train``; returns the exit code (see the module's docstring)."""
    resume: Path | None = args.resume
    if resume is not None:
        if args.config is not None:
            raise ConfigError("--resume takes the run's own config; leave out -c")
        from thoughtmdp.training.run_folder import resume_config

        overrides = [*args.overrides, f"run_dir={resume}"]
        config = load_train_config(str(resume_config(resume)), overrides)
    else:
        config = load_train_config(args.config, args.overrides)
    # Library progress bars (weights loading, shard writing) would break the live display.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from rich.console import Console

    from thoughtmdp.training.launch import ProcessFailed
    from thoughtmdp.training.run import train
    from thoughtmdp.training.stopping import Interrupted

    console = Console()
    try:
        train(config, console, resume=resume is not None)
    except ProcessFailed as exc:
        console.print(f"[red]thoughtmdp train: {exc}[/red]")
        return 1
    except Interrupted as exc:
        return exc.exit_code
    return 0


COMMAND = Command(
    "train",
    help="train with resets on this machine: learner + actors over loopback, then a summary",
    run=run,
    arguments=resume_arguments,
    description=(
        "With no arguments: asynchronous SRPO on ArithChain with the embedded tiny policy, "
        "sized for a 2-core CPU machine. Settings: defaults < -c FILE or NAME < KEY=VALUE "
        "(see thoughtmdp.settings.train.TrainConfig); `thoughtmdp config list` names "
        "the shipped configs."
    ),
    settings=TrainConfig,
    example="learner.optim.lr=1e-4 actor.episode.presets=[1x8,srpo]",
)
