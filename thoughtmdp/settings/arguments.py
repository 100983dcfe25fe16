"""Command-line help and arguments generated from a settings dataclass and its docstring."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def describe_settings(
    cls: type, prefix: str = "", defaults: Any = None, derived: Mapping[str, str] | None = None
) -> list[str]:
    """One ``key = default: meaning`` line per setting, from the dataclasses' docstrings.

    The meaning is the field's entry in the Google-style ``Attributes:`` section; nested
    dataclasses are listed with dotted keys, as ``key=value`` overrides spell them. The
    default shown is the one the command uses: the field of ``defaults`` (an instance of
    ``cls``, e.g. with the tuned sections of ``thoughtmdp train``), else of ``cls()``. A key
    of ``derived`` (dotted key: the key it is derived from; default: ``cls.DERIVED_KEYS``)
    shows where its value comes from instead.

    >>> from thoughtmdp.episodes.presets import EpisodeConfig
    >>> describe_settings(EpisodeConfig)[0]
    'base_group_size = 4: G1, rollouts from the prompt that form the base group.'
    >>> describe_settings(EpisodeConfig, defaults=EpisodeConfig(base_group_size=8))[0][:20]
    'base_group_size = 8:'
    """
    docs = attribute_docs(cls.__doc__ or "")
    instance = cls() if defaults is None else defaults
    derived = getattr(cls, "DERIVED_KEYS", {}) if derived is None else derived
    lines = []
    for item in dataclasses.fields(cls):
        key, default = f"{prefix}{item.name}", getattr(instance, item.name)
        if dataclasses.is_dataclass(default):
            lines += describe_settings(type(default), f"{key}.", default, derived)
            continue
        shown = f"from {derived[key]}" if key in derived else repr(_plain(default))
        lines.append(f"{key} = {shown}: {docs.get(item.name, '')}")
    return lines


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def attribute_docs(doc: str) -> dict[str, str]:
    """``{name: text}`` of a Google-style ``Attributes:`` section (a dataclass's field docs)."""
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
