"""Name registries for tasks (and, with the same class, reset policies).

Entries are objects or lazy ``"module:attr"`` strings: registering costs nothing and the
module is imported on first use. Third-party distributions add entries through an
entry-point group (``thoughtmdp.tasks``), read the first time a registry is consulted.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from thoughtmdp.errors import ThoughtMDPError, UnknownNameError

T = TypeVar("T")


def load_object(target: str) -> Any:
    """Import ``"package.module:attr"`` and return ``attr``.

    Raises:
        ThoughtMDPError: If the string is not of that form or the attribute is missing.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ThoughtMDPError(f"expected 'module:attr', got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ThoughtMDPError(f"{target!r}: module {module_name!r} has no {attr!r}") from None
    return obj


class Registry(Generic[T]):
    """A mapping from names to factories, filled in code or through entry points.

    Args:
        kind: What the entries are, for error messages (``"task"``).
        entry_point_group: The entry-point group read for third-party entries.
    """

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T | str] = {}
        self._entry_points_read = False

    def register(self, name: str, target: T | str | None = None) -> Any:
        """Register ``target`` under ``name``; without ``target``, return a decorator.

        Registering a name twice replaces the earlier entry (latest wins), so a user can
        override a built-in.
        """
        if not isinstance(name, str) or not name:
            raise ThoughtMDPError(f"a {self.kind} name must be a non-empty str, got {name!r}")
        if target is None:

            def decorator(obj: T) -> T:
                self._entries[name] = obj
                return obj

            return decorator
        self._entries[name] = target
        return target

    def get(self, name: str) -> T:
        """Return the entry registered under ``name``, importing it if it is lazy.

        Raises:
            UnknownNameError: If ``name`` is not registered; the message lists the known names.
        """
        self._read_entry_points()
        if name not in self._entries:
            raise UnknownNameError(self._unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = load_object(entry)
            self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._read_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        return name in self._entries

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known)}"

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for ep in entry_points(group=self.entry_point_group):
            self._entries.setdefault(ep.name, ep.value)
