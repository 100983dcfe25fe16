"""Settings dataclasses to and from plain data and YAML, checking every key and type.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from thoughtmdp.errors import ConfigError

T = TypeVar("T")


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
    thoughtmdp.errors.ConfigError: unknown key 'rl'. Did you mean 'lr'?
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
    try:
        return cls(**values)
    except ConfigError as exc:  # a section's own check names keys relative to the section
        if not where:
            raise
        raise ConfigError(within(where, str(exc))) from None


KEYED_MESSAGE = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


def within(where: str, message: str) -> str:
    """A section's error seen from outside: ``lr: ...`` in ``optim`` is ``optim.lr: ...``.

    >>> within("learner", "optim.lr: expected a positive number, got 0")
    'learner.optim.lr: expected a positive number, got 0'
    >>> within("learner", "set at most one of loss.clip_eps and loss.is_cap")
    'learner: set at most one of loss.clip_eps and loss.is_cap'
    """
    return f"{where}.{message}" if KEYED_MESSAGE.match(message) else f"{where}: {message}"


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
