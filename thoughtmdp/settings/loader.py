"""Typed configuration from YAML files and ``key=value`` overrides, with errors naming the key.

Every component has a frozen dataclass of its settings; a run's configuration is a dataclass
whose fields are those dataclasses. Layers apply in order: defaults < YAML file < overrides,
each laid over the one before key by key (a file that sets ``learner.max_steps`` keeps every
other ``learner`` default).

An override's value is YAML, with one convenience: in a flow mapping, a plain key written
``key:value``, without the space YAML needs after the colon, reads as ``key: value``, so
``task_options={size:500}`` is ``{"size": 500}`` (YAML itself reads ``{"size:500": null}``).
Quoted text and flow sequences are left alone: ``{t:'a:b'}`` is ``{"t": "a:b"}``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.convert import from_dict, parse_yaml, to_dict
from thoughtmdp.settings.files import config_path, merge, read_config

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
        try:
            node[leaf] = parse_override(raw)
        except ConfigError as exc:
            raise ConfigError(f"{key.strip()}: {exc}") from None
    return from_dict(type(config), data)


def parse_override(raw: str) -> Any:
    """The value of a ``key=value`` override: YAML, with ``{key:value}`` read as a mapping.

    >>> parse_override("{size:500}"), parse_override("{a: 1, b:[2, 3], c:{d:x:y}}")
    ({'size': 500}, {'a': 1, 'b': [2, 3], 'c': {'d': 'x:y'}})
    >>> parse_override("1e-5"), parse_override("[1x8,srpo]"), parse_override("a:b")
    (1e-05, ['1x8', 'srpo'], 'a:b')
    """
    try:
        return parse_yaml(space_flow_keys(raw))
    except Exception as exc:  # yaml.YAMLError, without importing yaml here
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"value {raw!r} is not valid YAML ({reason})") from None


FLOW_KEY = re.compile(r"\s*[\w.-]+:(?=[^\s,}])")


def space_flow_keys(text: str) -> str:
    """``{k:v}`` as ``{k: v}``: a space after each plain key of a flow mapping.

    Quoted text and flow sequences are left as they are.

    >>> space_flow_keys("{a:1, b:{c:'x:y'}, d:[e:f]}")
    "{a: 1, b: {c: 'x:y'}, d: [e:f]}"
    """
    out, brackets, quote, index = [], [], "", 0
    while index < len(text):
        char = text[index]
        out.append(char)
        index += 1
        if quote:
            quote = "" if char == quote and text[index - 2 : index] != "\\" + quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            brackets.append(char)
        elif char in "]}" and brackets:
            brackets.pop()
        if not quote and char in "{," and brackets[-1:] == ["{"]:
            key = FLOW_KEY.match(text, index)
            if key:
                out.append(key.group() + " ")
                index = key.end()
    return "".join(out)


def load(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults, then the config file ``path`` (its ``base`` chain first), then ``overrides``.

    ``path`` is a YAML file or the name of a shipped config
    (:mod:`thoughtmdp.settings.files`). The file is laid over the defaults key by key: a
    section it names keeps the defaults of the keys it does not set.

    Raises:
        ConfigError: If the file is missing, not a YAML mapping or holds a bad key or value
            (the message names the file).
    """
    config = cls()
    if path is not None:
        data = read_config(path)
        try:
            config = from_dict(cls, merge(to_dict(config), data))
        except ConfigError as exc:
            raise ConfigError(f"{config_path(path)}: {exc}") from None
    return apply_overrides(config, overrides)
