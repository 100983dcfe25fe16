"""``thoughtmdp config``: the resolved settings of a run, or the list of shipped configs."""

from __future__ import annotations

import argparse
from typing import Any

from thoughtmdp.commands import Command
from thoughtmdp.settings.checks import check_train
from thoughtmdp.settings.convert import to_yaml
from thoughtmdp.settings.files import Kind, config_kind, shipped_configs
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import TrainConfig, check_derived_keys, default_run_dir, resolve


def arguments(parser: argparse.ArgumentParser) -> None:
    """``show`` (a config file and overrides, of a kind) and ``list``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the settings a run would use, as YAML")
    show.add_argument("-c", "--config", help="YAML file, or a shipped config's name")
    show.add_argument(
        "--kind",
        choices=["train", "learner", "actor"],
        help="what the file configures (default: from its name; see `config list`)",
    )
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings")
    actions.add_parser("list", help="list the shipped configs")


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp config show|list``."""
    if args.action == "list":
        for name in shipped_configs():
            print(f"{name}  ({config_kind(name)})")
        return 0
    kind = args.kind or (config_kind(args.config) if args.config else "train")
    config = load_config(kind, args.config, args.overrides)
    print(to_yaml(config), end="")
    return 0


def load_config(kind: Kind, config: str | None, overrides: list[str]) -> Any:
    """The settings of a ``train`` run (resolved), a ``learner`` or an ``actor``, checked.

    Names, options and values are checked, not the file system: a shipped config shows
    before its model or data is downloaded (``thoughtmdp train`` checks those too).

    Raises:
        ConfigError: For a missing file, an unknown key or a bad value.
    """
    if kind == "train":
        train = load(TrainConfig, config, overrides)
        check_derived_keys(train)
        check_train(train, files=False)
        return resolve(train, train.run_dir or default_run_dir(train))
    if kind == "learner":
        from thoughtmdp.settings.learner import LearnerConfig

        return load(LearnerConfig, config, overrides)
    from thoughtmdp.settings.actor import ActorConfig

    return load(ActorConfig, config, overrides)


COMMAND = Command(
    "config",
    help="show the resolved settings of a run, or list shipped configs",
    run=run,
    arguments=arguments,
)
