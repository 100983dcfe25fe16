"""Typed configuration from YAML files and ``key=value`` overrides, with errors naming the key.

Every component has a frozen dataclass of its settings; a run's configuration is a dataclass
whose fields are those dataclasses. Layers apply in order: defaults < YAML file < overrides.
An unknown key is an error that suggests the closest valid key; a value of the wrong type
names the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from thoughtmdp.errors import ThoughtMDPError

T = TypeVar("T")


class ConfigError(ThoughtMDPError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping, checking keys and types.

    Raises:
        ConfigError: For an unknown key (with the closest valid one) or a bad value.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Optim:
    ...     lr: float = 5e-5
    ...     betas: tuple[float, float] = (0.9, 0.999)
    >>> from_dict(Optim, {"lr": 1e-4}).lr
    0.0001
    >>> from_dict(Optim, {"rl": 1e-4})
    Traceback (most recent call last):
    ...
    thoughtmdp.settings.ConfigError: unknown key 'rl'. Did you mean 'lr'?
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = (
                f" Did you mean {_join(where, close[0])!r}?" if close else f" Valid keys: {names}"
            )
            raise ConfigError(f"unknown key {path!r}.{hint}")
        values[key] = _convert(hints[key], value, path)
    return cls(**values)


# YAML 1.1 reads ``1e-5`` (no dot) as a string; learning rates are written that way, so
# such numbers are floats here, as in YAML 1.2.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def parse_yaml(text: str) -> Any:
    """Parse YAML with the safe loader, reading ``1e-5`` as a float.

    >>> parse_yaml("lr: 1e-5")
    {'lr': 1e-05}
    """
    import yaml

    return yaml.load(text, Loader=_loader())


@functools.cache
def _loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        """The safe loader, with exponent floats."""

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))
    return Loader


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """Apply ``a.b=value`` strings (values parsed as YAML) to a config dataclass.

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
    (:mod:`thoughtmdp.config_files`).

    Raises:
        ConfigError: If the file is missing, not a YAML mapping or holds a bad key or value
            (the message names the file).
    """
    from thoughtmdp.config_files import config_path, read_config

    config = cls()
    if path is not None:
        data = read_config(path)
        try:
            config = from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{config_path(path)}: {exc}") from None
    return apply_overrides(config, overrides)


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain nested data (tuples become lists), e.g. to save it."""
    data = dataclasses.asdict(config)
    return typing.cast(dict[str, Any], _plain(data))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_yaml(config: Any) -> str:
    """A config dataclass as YAML text that :func:`load` reads back (paths as strings).

    >>> @dataclasses.dataclass(frozen=True)
    ... class Run:
    ...     steps: int = 10
    ...     out: Path = Path("runs")
    >>> print(to_yaml(Run()), end="")
    steps: 10
    out: runs
    """
    import yaml

    def strings(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strings(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strings(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return str(yaml.safe_dump(strings(to_dict(config)), sort_keys=False, allow_unicode=True))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _convert(option, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_name(hint)}, got {value!r}")
    if hint is typing.Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(a, v, f"{path}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        converted = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    return _scalar(hint, value, path)


def _scalar(hint: Any, value: Any, path: str) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if hint is type(None) and value is None:
        return None
    if hint is float and is_number:
        return float(value)
    if hint is int and is_number and isinstance(value, int):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    if hint is Path and isinstance(value, str | Path):
        return Path(value)
    raise ConfigError(f"{path}: expected {_name(hint)}, got {value!r}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def describe_settings(cls: type, prefix: str = "") -> list[str]:
    """One ``key = default: meaning`` line per setting, from the dataclasses' docstrings.

    The meaning is the field's entry in the Google-style ``Attributes:`` section; nested
    dataclasses are listed with dotted keys, as ``key=value`` overrides spell them.

    >>> from thoughtmdp.config import EpisodeConfig
    >>> describe_settings(EpisodeConfig)[0]
    'base_group_size = 4: G1, rollouts from the prompt that form the base group.'
    """
    docs = _attribute_docs(cls.__doc__ or "")
    lines = []
    for item in dataclasses.fields(cls):
        factory: Any = item.default_factory
        default = factory() if item.default is dataclasses.MISSING else item.default
        if isinstance(default, Path):
            default = str(default)
        if dataclasses.is_dataclass(default):
            lines += describe_settings(type(default), f"{prefix}{item.name}.")
        else:
            lines.append(f"{prefix}{item.name} = {default!r}: {docs.get(item.name, '')}")
    return lines


def _attribute_docs(doc: str) -> dict[str, str]:
    """``{name: text}`` of a Google-style ``Attributes:`` section."""
    docs: dict[str, str] = {}
    name = None
    for line in doc.split("Attributes:", 1)[-1].splitlines():
        stripped = line.strip()
        if ":" in stripped and line.startswith("        ") and not line.startswith("         "):
            name, _, text = stripped.partition(":")
            docs[name] = text.strip()
        elif name and stripped:
            docs[name] += " " + stripped
    return docs


def add_settings_arguments(parser: Any, cls: type, example: str) -> None:
    """Give an argparse parser ``--config FILE`` and ``KEY=VALUE`` overrides for ``cls``.

    The help then ends with every setting, its default and its meaning.

    Args:
        parser: An ``argparse.ArgumentParser`` (a sub-command's).
        cls: The settings dataclass the command reads.
        example: Overrides shown in the help, e.g. ``"model=PATH optim.lr=1e-5"``.
    """
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    lines = "\n".join(f"  {line}" for line in describe_settings(cls))
    parser.epilog = f"settings (KEY = default: meaning):\n{lines}"
    parser.add_argument("-c", "--config", help="YAML file, or a shipped config's name")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"settings, e.g. {example}"
    )
