"""The ``thoughtmdp train`` command (no torch until training starts).

``-c`` takes a YAML file or the name of a shipped config (``thoughtmdp config list``); then
``key=value`` overrides apply. The config is parsed and checked before anything heavy is
imported, so a typo is reported at once.
"""

from __future__ import annotations

import argparse
import os

from thoughtmdp.commands import Command
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


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp train``; returns the exit code (2: bad settings, 1: a process died)."""
    config = load_train_config(args.config, args.overrides)
    # Library progress bars (weights loading, shard writing) would break the live display.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from rich.console import Console

    from thoughtmdp.training.launch import ProcessFailed
    from thoughtmdp.training.run import train

    console = Console()
    try:
        train(config, console)
    except ProcessFailed as exc:
        console.print(f"[red]thoughtmdp train: {exc}[/red]")
        return 1
    return 0


COMMAND = Command(
    "train",
    help="train with resets on this machine: learner + actors over loopback, then a summary",
    run=run,
    description=(
        "With no arguments: asynchronous SRPO on ArithChain with the embedded tiny policy, "
        "sized for a 2-core CPU machine. Settings: defaults < -c FILE or NAME < KEY=VALUE "
        "(see thoughtmdp.settings.train.TrainConfig); `thoughtmdp config list` names "
        "the shipped configs."
    ),
    settings=TrainConfig,
    example="learner.optim.lr=1e-4 actor.episode.presets=[1x8,srpo]",
)
