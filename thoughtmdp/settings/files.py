"""Config files: a path or a shipped config's name, and ``base:`` layering.

A config file may start from another: ``base: paper/table5`` loads that file first and
lays this one over it (mappings merge key by key; anything else is replaced). Names that
are not files are looked up among the configs shipped in ``thoughtmdp/configs``
(``thoughtmdp config list``). A name ending in ``learner`` or ``actor`` holds the settings
of that process; every other one is a ``thoughtmdp train`` config.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.convert import parse_yaml

CONFIG_FOLDER = "configs"
Kind = Literal["train", "learner", "actor"]


def shipped_configs() -> list[str]:
    """Names of the shipped configs, e.g. ``paper/srpo-numinamath-olmo3-7b``."""
    root = resources.files("thoughtmdp").joinpath(CONFIG_FOLDER)
    names = []
    for folder in [root, *(p for p in root.iterdir() if p.is_dir())]:
        prefix = "" if folder == root else f"{folder.name}/"
        names += [prefix + p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")]
    return sorted(names)


def config_kind(name: str) -> Kind:
    """What a shipped config configures, from its name.

    >>> config_kind("multinode/learner"), config_kind("paper/table5")
    ('learner', 'train')
    """
    stem = Path(name).stem
    if stem.endswith("learner"):
        return "learner"
    return "actor" if stem.endswith("actor") else "train"


def config_path(name: str | Path) -> Path:
    """``name`` itself when it is a file, else the shipped config of that name.

    Raises:
        ConfigError: If neither exists (the message suggests the closest shipped name).
    """
    path = Path(name)
    if path.is_file():
        return path
    shipped = resources.files("thoughtmdp").joinpath(CONFIG_FOLDER, f"{name}.yaml")
    if shipped.is_file():
        return Path(str(shipped))
    names = shipped_configs()
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.4)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"no config file {str(name)!r} and no shipped config of that name.{hint} "
        f"Shipped: {', '.join(names)}"
    )


def read_config(name: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The settings of a config file as a mapping, its ``base`` chain merged in.

    Raises:
        ConfigError: For a missing file, invalid YAML, a non-mapping or a ``base`` cycle;
            the message names the file.
    """
    path = config_path(name)
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f"{path}: its base chain loops: {chain}")
    try:
        data = parse_yaml(path.read_text()) or {}
    except Exception as exc:  # yaml.YAMLError, without importing yaml here
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a file or a shipped config's name, got {base!r}")
    return merge(read_config(base, (*_seen, path.resolve())), data)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``: mappings merge key by key, other values are replaced.

    >>> merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"y": 3}, "b": [2]})
    {'a': {'x': 1, 'y': 3}, 'b': [2]}
    """
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
