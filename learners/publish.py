"""Saving adapter versions atomically and describing them in :class:`AdapterNotice`s.

Version ``v`` lives in ``adapters/v{v:06d}/`` as PEFT writes it (``adapter_config.json`` and
``adapter_model.safetensors``), loadable with ``PeftModel.from_pretrained`` and by vLLM's
``LoRARequest``. It is written under a temporary name, flushed to disk and renamed, so a
reader (or a crash) never sees half a version. Versions only grow, across restarts too.

Without a shared file system a small adapter travels inside its notice; one larger than
``INLINE_LIMIT_BYTES`` is announced by its file sizes and pulled by the actors in chunks
(:mod:`thoughtmdp.wire.chunks`), so no message comes near the wire's size limit.

Versions are written in the serving dtype (the base model's): a bf16 run trains fp32 master
weights but publishes bf16 adapters, half the bytes to move, as the engines serve them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.wire import ADAPTER_FILES, ADAPTER_WEIGHTS, AdapterNotice, sha256_of

VERSION_DIR = re.compile(r"^v(\d{6,})$")
INLINE_LIMIT_BYTES = 16 * 2**20


def fsync_tree(folder: Path) -> None:
    """Flush every file in ``folder`` and the folder itself to disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Flush a directory entry (after creating or renaming something in it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_dir(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` and rename it to ``final`` (atomic on one file system).

    Raises:
        ThoughtMDPError: If ``final`` already exists.
    """
    if final.exists():
        raise ThoughtMDPError(f"{final} already exists; refusing to overwrite it")
    fsync_tree(tmp)
    os.rename(tmp, final)
    fsync_dir(final.parent)


class AdapterPublisher:
    """Writes adapter versions under ``root`` and builds their notices.

    Args:
        root: Folder of the versions (``run_dir/adapters``), on a file system the actors
            share unless ``inline``.
        inline: Send the files to the actors instead of their path: inside the notice
            up to ``inline_limit`` bytes in all, in chunks the actors pull beyond.
        inline_limit: Largest adapter (bytes, all files) sent inside its notice.
        dtype: The serving dtype floating-point weights are written in (``None``: as given).
    """

    def __init__(
        self,
        root: Path,
        inline: bool = False,
        inline_limit: int = INLINE_LIMIT_BYTES,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.root, self.inline, self.inline_limit = Path(root), inline, inline_limit
        self.dtype = dtype
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(".v*.tmp"):  # a crash mid-write leaves these
            shutil.rmtree(leftover, ignore_errors=True)

    def latest_version(self) -> int:
        """Highest complete version on disk (0 when there is none)."""
        versions = [
            int(match.group(1))
            for path in self.root.iterdir()
            if (match := VERSION_DIR.match(path.name))
            and all((path / name).is_file() for name in ADAPTER_FILES)
        ]
        return max(versions, default=0)

    def folder(self, version: int) -> Path:
        """Where ``version`` lives."""
        return self.root / f"v{version:06d}"

    def publish(self, model: Any, state: Mapping[str, Any], version: int) -> AdapterNotice:
        """Save ``state`` (the adapter's weights) as ``version`` and describe it.

        Args:
            model: The ``PeftModel`` (its adapter config is written alongside).
            state: Full adapter weights by parameter name, e.g. ``Engine.adapter_state()``.
            version: The new version number.

        Returns:
            The notice to send to actors.
        """
        final = self.folder(version)
        tmp = self.root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp), state_dict=self.serving(state))
        (tmp / "README.md").unlink(missing_ok=True)  # PEFT's model card; actors need 2 files
        commit_dir(tmp, final)
        return self.notice(version)

    def serving(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with its floating-point weights in the serving dtype."""
        if self.dtype is None:
            return dict(state)
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in state.items()}

    def notice(self, version: int) -> AdapterNotice:
        """The notice of a version already on disk."""
        folder = self.folder(version)
        digest = sha256_of(folder / ADAPTER_WEIGHTS)
        if not self.inline:
            return AdapterNotice(version, digest, str(folder.resolve()))
        sizes = tuple((name, (folder / name).stat().st_size) for name in ADAPTER_FILES)
        if sum(size for _, size in sizes) > self.inline_limit:
            return AdapterNotice(version, digest, sizes=sizes)
        files = tuple((name, (folder / name).read_bytes()) for name in ADAPTER_FILES)
        return AdapterNotice(version, digest, None, files)
