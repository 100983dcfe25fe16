"""A run folder's ownership and history: its lock, whether it holds a run, how far it got.

One ``thoughtmdp train`` process at a time trains into a folder: it holds ``train.lock``
(an ``flock``, released by the kernel however the process ends, so a lock left by a dead
process is simply taken over) with its process id inside for the message. A folder that
already holds a run is only continued with ``--resume``; the config a run was started with
is kept in ``configs/train.yaml`` so that ``--resume`` starts it the same way.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import IO

from thoughtmdp.errors import ThoughtMDPError

LOCK_FILE = "train.lock"
TRAIN_CONFIG = Path("configs") / "train.yaml"
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "checkpoints", "adapters", TRAIN_CONFIG)
CHECKPOINT = re.compile(r"^step-(\d{8})$")


class RunFolderBusy(ThoughtMDPError):
    """Another process trains into the run folder."""


def lock(run_dir: Path) -> IO[str]:
    """Take the run folder's lock for this process; keep the returned file open.

    Raises:
        RunFolderBusy: If another live process holds it (naming its process id).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 (held for the run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise RunFolderBusy(
            f"{run_dir} is in use by another thoughtmdp train (pid {owner}, {path}); "
            "wait for it or choose another run_dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds (part of) a run already."""
    return any((run_dir / name).exists() for name in RUN_MARKERS)


def refuse_existing(run_dir: Path) -> None:
    """Refuse to start a new run into a folder that holds one.

    Raises:
        ThoughtMDPError: Naming ``--resume``.
    """
    if holds_run(run_dir):
        raise ThoughtMDPError(
            f"{run_dir} already holds a run; continue it with "
            f"`thoughtmdp train --resume {run_dir}` or choose another run_dir"
        )


def checkpoint_step(run_dir: Path) -> int:
    """Steps of the newest complete checkpoint (0 when there is none)."""
    folder = run_dir / "checkpoints"
    steps = [
        int(m.group(1))
        for path in (folder.iterdir() if folder.is_dir() else [])
        if (m := CHECKPOINT.match(path.name)) and (path / "state.json").is_file()
    ]
    return max(steps, default=0)


def resume_config(run_dir: Path) -> Path:
    """The config file ``--resume`` starts from: the run's own, else its resolved one.

    Raises:
        ThoughtMDPError: If ``run_dir`` holds no run.
    """
    for candidate in (run_dir / TRAIN_CONFIG, run_dir / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise ThoughtMDPError(
        f"--resume {run_dir}: no run there (neither {TRAIN_CONFIG} nor config.yaml); "
        "start a new run without --resume"
    )
