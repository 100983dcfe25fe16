"""The ``thoughtmdp train`` and ``thoughtmdp config`` commands (no torch until training starts).

``-c`` takes a YAML file or the name of a shipped config (``thoughtmdp config list``); then
``key=value`` overrides apply. The config is parsed and checked before anything heavy is
imported, so a typo is reported at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.arguments import add_settings_arguments
from thoughtmdp.settings.convert import to_yaml
from thoughtmdp.settings.files import Kind, config_kind, shipped_configs
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import TrainConfig, check_not_derived, default_run_dir, resolve


def load_train_config(config: str | None, overrides: list[str]) -> TrainConfig:
    """Defaults < the config file (or shipped config) < overrides, checked.

    Raises:
        ConfigError: For a missing file, an unknown key, a bad value or a derived key.
    """
    train = load(TrainConfig, config, overrides)
    check_not_derived(train)
    return train


def add_parsers(commands: Any) -> None:
    """Add ``train`` and ``config`` to an argparse sub-parsers object."""
    train = commands.add_parser(
        "train",
        help="train with resets on this machine: learner + actors over loopback, then a summary",
        description=(
            "With no arguments: asynchronous SRPO on ArithChain with the embedded tiny policy, "
            "sized for a 2-core CPU machine. Settings: defaults < -c FILE or NAME < KEY=VALUE "
            "(see thoughtmdp.settings.train.TrainConfig); `thoughtmdp config list` names "
            "the shipped configs."
        ),
    )
    add_settings_arguments(train, TrainConfig, "learner.optim.lr=1e-4 actor.presets=[1x8,srpo]")
    config = commands.add_parser(
        "config", help="show the resolved settings of a run, or list shipped configs"
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the settings a run would use, as YAML")
    show.add_argument("-c", "--config", help="YAML file, or a shipped config's name")
    show.add_argument(
        "--kind",
        choices=["train", "learner", "actor"],
        help="what the file configures (default: from its name; see `config list`)",
    )
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings")
    actions.add_parser("list", help="list the shipped configs")


def run_train(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp train``; returns the exit code (2: bad settings, 1: a process died)."""
    try:
        config = load_train_config(args.config, args.overrides)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp train: {exc}", file=sys.stderr)
        return 2
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


def run_config(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp config show|list``."""
    if args.action == "list":
        for name in shipped_configs():
            print(f"{name}  ({config_kind(name)})")
        return 0
    kind = args.kind or (config_kind(args.config) if args.config else "train")
    try:
        config = load_config(kind, args.config, args.overrides)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp config: {exc}", file=sys.stderr)
        return 2
    print(to_yaml(config), end="")
    return 0


def load_config(kind: Kind, config: str | None, overrides: list[str]) -> Any:
    """The settings of a ``train`` run (resolved), a ``learner`` or an ``actor``, checked.

    Raises:
        ConfigError: For a missing file, an unknown key or a bad value.
    """
    if kind == "train":
        train = load_train_config(config, overrides)
        return resolve(train, train.run_dir or default_run_dir(train))
    if kind == "learner":
        from thoughtmdp.settings.learner import LearnerConfig

        return load(LearnerConfig, config, overrides)
    from thoughtmdp.settings.actor import ActorConfig

    return load(ActorConfig, config, overrides)
