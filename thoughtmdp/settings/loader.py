"""Typed configuration from YAML files and ``key=value`` overrides, with errors naming the key.

Every component has a frozen dataclass of its settings; a run's configuration is a dataclass
whose fields are those dataclasses. Layers apply in order: defaults < YAML file < overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.convert import from_dict, parse_yaml, to_dict
from thoughtmdp.settings.files import config_path, read_config

T = TypeVar("T")


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """Apply ``a.b=value`` strings (values parsed as YAML) to a config dataclass.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Run:
    ...     steps: int = 10
    >>> apply_overrides(Run(), ["steps=3"]).steps
    3
    """
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = parse_yaml(raw)
    return from_dict(type(config), data)


def load(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults, then the config file ``path`` (its ``base`` chain first), then ``overrides``.

    ``path`` is a YAML file or the name of a shipped config
    (:mod:`thoughtmdp.settings.files`).

    Raises:
        ConfigError: If the file is missing, not a YAML mapping or holds a bad key or value
            (the message names the file).
    """
    config = cls()
    if path is not None:
        data = read_config(path)
        try:
            config = from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{config_path(path)}: {exc}") from None
    return apply_overrides(config, overrides)
