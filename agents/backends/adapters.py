"""Loading the learner's adapter notices into a backend, after checking their digest."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.wire import ADAPTER_WEIGHTS, AdapterNotice, sha256_of

logger = logging.getLogger(__name__)


class AdapterRefused(ThoughtMDPError):
    """An adapter notice failed verification; the previous adapter stays in use."""


class LoadsAdapters(Protocol):
    """A backend that can switch to a new LoRA version, and keep an old one for an episode.

    The contract of :meth:`pinned`: every request made inside ``async with
    backend.pinned():``, by the calling task or by tasks it starts there (which copy its
    ``contextvars`` context, as ``asyncio.gather`` and ``asyncio.create_task`` do), samples
    with the version that was current when the block began, and reports it on its thoughts,
    however many :meth:`load_adapter` calls happen meanwhile. The backend keeps that
    version's weights until the last block holding it ends and its last request finishes,
    then frees them. A block nested in another keeps the outer block's version. Outside
    any block a request samples with the newest version, as before. Tasks started in a
    block must finish before it ends.
    """

    @property
    def policy_version(self) -> int:
        """Version new requests sample with outside :meth:`pinned` blocks."""
        ...

    async def load_adapter(self, path: str | Path, version: int | None = None) -> None:
        """Sample from now on with the PEFT adapter in ``path`` as ``version``.

        Args:
            path: A folder written by PEFT's ``save_pretrained``.
            version: The new policy version; ``None`` adds one to the current one.
        """
        ...

    def pinned(self) -> AbstractAsyncContextManager[int]:
        """A block whose requests all sample with the version current at its start.

        Returns:
            An async context manager that yields the pinned version.
        """
        ...


PullFiles = Callable[[AdapterNotice, Path], Awaitable[None]]
"""Pulls the files a notice lists by size into a folder (``EpisodeSender.pull_adapter``)."""


def materialize(notice: AdapterNotice, root: Path) -> Path:
    """The adapter's folder: its shared path, or inline files written under ``root``.

    Raises:
        AdapterRefused: If the folder or its weights are missing, a file name is unsafe, or
            the weights' SHA-256 differs from the notice.
    """
    if notice.path is not None:
        folder = Path(notice.path)
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"v{notice.version}-", dir=root))
        for name, content in notice.files:
            if Path(name).name != name or name in ("", ".", ".."):
                raise AdapterRefused(f"adapter v{notice.version}: unsafe file name {name!r}")
            (folder / name).write_bytes(content)
    return verified(notice, folder)


def verified(notice: AdapterNotice, folder: Path) -> Path:
    """``folder``, once its weights' SHA-256 matches the notice.

    Raises:
        AdapterRefused: If the weights are missing or their digest differs.
    """
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise AdapterRefused(f"adapter v{notice.version}: {weights} does not exist")
    actual = sha256_of(weights)
    if actual != notice.sha256:
        raise AdapterRefused(
            f"adapter v{notice.version}: sha256 of {weights} is {actual}, "
            f"the notice says {notice.sha256}"
        )
    return folder


async def pulled(notice: AdapterNotice, root: Path, pull: PullFiles) -> Path:
    """The adapter's folder under ``root``, its files pulled from the learner and verified.

    Raises:
        AdapterRefused: If the pull fails or the weights' SHA-256 differs from the notice.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"v{notice.version}-", dir=root))
    try:
        await pull(notice, folder)
        return await asyncio.to_thread(verified, notice, folder)
    except (ThoughtMDPError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise AdapterRefused(str(exc)) from None


async def apply_notice(
    backend: LoadsAdapters, notice: AdapterNotice, root: Path, pull: PullFiles | None = None
) -> bool:
    """Verify and load a notice newer than the backend's version; ``False`` if refused or old.

    Args:
        backend: The backend to load into.
        notice: The learner's notice.
        root: Where adapters that are not on a shared file system are written.
        pull: How to fetch files the notice lists by size (refused when ``None``).
    """
    if notice.version <= backend.policy_version:
        return False
    try:
        if notice.sizes:
            if pull is None:
                raise AdapterRefused(f"adapter v{notice.version}: nothing can pull its files")
            folder = await pulled(notice, root, pull)
        else:
            folder = await asyncio.to_thread(materialize, notice, root)
    except AdapterRefused as exc:
        logger.error("%s; keeping version %d", exc, backend.policy_version)
        return False
    await backend.load_adapter(folder, notice.version)
    logger.info("loaded adapter v%d from %s", notice.version, folder)
    return True
