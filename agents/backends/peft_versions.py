"""The policy versions of a PEFT model: one named LoRA adapter each, kept while pinned or used.

:class:`AdapterVersions` loads each new version as a new named adapter of one PEFT model and
deletes an older one once it is no longer current, no :meth:`AdapterVersions.pinned` block
holds it and no request samples with it. Rows of different versions share a forward pass
through PEFT's mixed batches (:meth:`AdapterVersions.adapter_names`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass(eq=False)
class AdapterVersion:
    """A policy version: its PEFT adapter (``None``: the model as given) and who holds it.

    It stays in the model while it is current, ``in_flight`` or ``pins`` is positive.

    Attributes:
        number: The policy version.
        name: The adapter's name in the PEFT model; ``None`` for the model as given.
        path: The adapter's folder; ``None`` for the model as given.
        in_flight: Queued or running requests that sample with it.
        pins: :meth:`AdapterVersions.pinned` blocks holding it.
        removed: Whether its adapter has been deleted (or, without one, let go of).
    """

    number: int
    name: str | None = None
    path: str | None = None
    in_flight: int = 0
    pins: int = 0
    removed: bool = False


class AdapterVersions:
    """The current and the still-held versions of a model, each a named PEFT adapter.

    Args:
        model: The model, already on ``device``; a PEFT model starts with its active adapter.
        device: Where to move the model after loading an adapter.
        policy_version: Version of the initial weights.

    Attributes:
        model: The model, wrapped in a ``peft.PeftModel`` by the first :meth:`load`.
        lock: The model lock: held for a whole batch, for a load and for deleting adapters.

    Example:
        >>> import asyncio
        >>> versions = AdapterVersions(object(), "cpu", policy_version=3)
        >>> versions.current.number, versions.current.name
        (3, None)
        >>> async def block():
        ...     async with versions.pinned() as number:
        ...         return number, versions.pinned_version() is versions.current
        >>> asyncio.run(block())
        (3, True)
        >>> versions.adapter_names([versions.current]) is None
        True
    """

    def __init__(self, model: Any, device: Any, *, policy_version: int = 0) -> None:
        self.model, self.device = model, device
        self.lock = threading.Lock()
        active = getattr(model, "active_adapter", None) if hasattr(model, "peft_config") else None
        self._current = AdapterVersion(policy_version, active)
        self._retired: list[AdapterVersion] = []  # no longer current, still held
        self._names = itertools.count(1)
        self._guard = threading.Lock()  # guards ``_current``, ``_retired`` and the counts
        # The version pinned by the enclosing ``pinned()`` block of the calling task, if any;
        # tasks started inside the block (``asyncio.gather``) copy it with their context.
        self._pin: contextvars.ContextVar[AdapterVersion | None] = contextvars.ContextVar(
            f"peft-pin-{id(self)}", default=None
        )

    @property
    def current(self) -> AdapterVersion:
        """The version requests sample with outside :meth:`pinned` blocks."""
        return self._current

    def load(self, path: str | Path, version: int | None = None) -> None:
        """Make the PEFT adapter in ``path`` current under a new name; blocks while a batch runs.

        The previous version's adapter is deleted at once unless something holds it; then
        when the last holder lets go.

        Args:
            path: A folder written by PEFT's ``save_pretrained``.
            version: The new policy version; ``None`` adds one to the current one.
        """
        from peft import PeftModel

        with self.lock:
            name = f"policy_{next(self._names)}"
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
                self.model.set_adapter(name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            self.model.to(self.device).eval()
            with self._guard:
                number = self._current.number + 1 if version is None else version
                self._retired.append(self._current)
                self._current = AdapterVersion(number, name, str(path))
            self._drop_unused_locked()

    @contextlib.asynccontextmanager
    async def pinned(self) -> AsyncIterator[int]:
        """Pin the calling context to the version current now (or to the enclosing block's).

        Inside the block, :meth:`pinned_version` gives that version to the calling task and
        to the tasks it starts (they copy its context). Its adapter stays loaded until the
        block ends and :meth:`release` has let go of its last request.

        Yields:
            The pinned policy version.
        """
        with self._guard:
            version = self._pin.get() or self._current
            version.pins += 1
        token = self._pin.set(version)
        try:
            yield version.number
        finally:
            self._pin.reset(token)
            with self._guard:
                version.pins -= 1
                unused = self._unused(version)
            if unused:
                await asyncio.to_thread(self._drop_unused)

    def pinned_version(self) -> AdapterVersion | None:
        """The version of the calling context's :meth:`pinned` block; ``None`` outside one."""
        return self._pin.get()

    def hold(self, version: AdapterVersion) -> None:
        """Keep ``version`` for one more request, until :meth:`release` lets go of it.

        Raises:
            RuntimeError: If its adapter is gone: the request started after its pin ended.
        """
        with self._guard:
            if version.removed:
                raise RuntimeError(
                    f"a request pinned to version {version.number} started after its pin ended"
                )
            version.in_flight += 1

    def release(self, versions: Sequence[AdapterVersion]) -> None:
        """Let go of one request's hold on each of ``versions``; delete adapters now unused.

        Takes the model lock when an adapter is to be deleted, so call it without holding it.
        """
        with self._guard:
            for version in versions:
                version.in_flight -= 1
            unused = any(self._unused(version) for version in versions)
        if unused:
            self._drop_unused()

    def adapter_names(self, versions: Sequence[AdapterVersion]) -> list[str] | None:
        """PEFT's ``adapter_names`` for a batch whose rows sample with ``versions``.

        Returns:
            One adapter name per row, or ``None`` when every row uses the current version
            (the model's active adapter needs no mixed batch).
        """
        if all(version is self._current for version in versions):
            return None
        return [version.name or BASE for version in versions]

    def _unused(self, version: AdapterVersion) -> bool:
        """Whether ``version`` is retired and nobody holds it (``_guard`` is held)."""
        return not version.pins and not version.in_flight and version is not self._current

    def _drop_unused(self) -> None:
        with self.lock:
            self._drop_unused_locked()

    def _drop_unused_locked(self) -> None:
        """Delete the adapters of retired versions nobody holds (the model lock is held)."""
        with self._guard:
            unused = [version for version in self._retired if self._unused(version)]
            self._retired = [version for version in self._retired if not self._unused(version)]
            for version in unused:
                version.removed = True
        for version in unused:
            if version.name is not None:
                self.model.delete_adapter(version.name)
