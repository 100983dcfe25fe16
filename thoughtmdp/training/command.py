"""The ``thoughtmdp train`` and ``thoughtmdp config`` commands (no torch until training starts).

``-c`` takes a YAML file or the name of a shipped config (``thoughtmdp config list``); then
``key=value`` overrides apply. The config is parsed and checked before anything heavy is
imported, so a typo is reported at once.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings import ConfigError, add_settings_arguments, load, to_yaml
from thoughtmdp.training.config import TrainConfig, check_not_derived

CONFIG_PACKAGE = "thoughtmdp"
CONFIG_FOLDER = "configs"


def shipped_configs() -> list[str]:
    """Names of the configs shipped with thoughtmdp, e.g. ``paper/srpo-olmo3-7b-numinamath``."""
    root = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER)
    names = []
    for folder in [root, *(p for p in root.iterdir() if p.is_dir())]:
        prefix = "" if folder == root else f"{folder.name}/"
        names += [
            prefix + p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")
        ]
    return sorted(names)


def config_path(name: str) -> Path:
    """A config file: ``name`` itself when it is a file, else the shipped config of that name.

    Raises:
        ConfigError: If neither exists (the message suggests the closest shipped name).
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = resources.files(CONFIG_PACKAGE).joinpath(CONFIG_FOLDER, f"{name}.yaml")
    if shipped.is_file():
        return Path(str(shipped))
    names = shipped_configs()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"no config file {name!r} and no shipped config of that name.{hint} "
        f"Shipped: {', '.join(names)}"
    )


def load_train_config(config: str | None, overrides: list[str]) -> TrainConfig:
    """Defaults < the config file (or shipped config) < overrides, checked.

    Raises:
        ConfigError: For a missing file, an unknown key, a bad value or a derived key.
    """
    path = config_path(config) if config else None
    train = load(TrainConfig, path, overrides)
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
            "(see thoughtmdp.training.config.TrainConfig); `thoughtmdp config list` names "
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
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings")
    actions.add_parser("list", help="list the shipped configs")


def run_train(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp train``; returns the exit code (2: bad settings, 1: a process died)."""
    try:
        config = load_train_config(args.config, args.overrides)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp train: {exc}", file=sys.stderr)
        return 2
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
            print(name)
        return 0
    try:
        config = load_train_config(args.config, args.overrides)
    except ThoughtMDPError as exc:
        print(f"thoughtmdp config: {exc}", file=sys.stderr)
        return 2
    print(to_yaml(config), end="")
    return 0
