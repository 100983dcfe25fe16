"""Checkpoints: adapter, optimiser, step, RNG states, stream position and config, atomically.

``checkpoints/step-{step:08d}/`` holds the engine's state (every rank writes its part),
``rng-rank{r}.json`` per rank and ``state.json`` (step, version, episodes consumed, config).
It is written as ``.step-{step:08d}.tmp`` and renamed once complete, so only complete
checkpoints carry the final name; resuming picks the newest of those.

Ranks need not share ``run_dir``: the files each rank wrote are gathered to every rank whose
folder lacks them (LoRA checkpoints are small), and the lowest rank seeing a folder commits
it, so every folder ends up with the whole checkpoint. Resuming takes the newest step that
every rank holds complete (:func:`agreed_checkpoint`).
"""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from thoughtmdp.learners.model.engine import Engine
from thoughtmdp.learners.publish import commit_dir

CHECKPOINT_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "state.json"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or ``None``."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    complete = [
        (int(m.group(1)), path)
        for path in folder.iterdir()
        if (m := CHECKPOINT_DIR.match(path.name)) and (path / STATE_FILE).is_file()
    ]
    return max(complete)[1] if complete else None


def save_checkpoint(
    run_dir: Path, step: int, engine: Engine, state: dict[str, Any], keep: int
) -> Path:
    """Write a checkpoint of ``step`` (every rank calls this; rank 0 commits it).

    Args:
        run_dir: The run folder.
        step: Learner steps completed.
        engine: The engine whose optimiser and adapter state is saved.
        state: Loop state to save as JSON (step, version, stream position, config).
        keep: Complete checkpoints to keep; older ones are deleted.

    Returns:
        The checkpoint's folder.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".{final.name}.tmp"
    _make_tmp(tmp, engine)
    engine.save(tmp)
    (tmp / f"rng-rank{engine.rank}.json").write_text(json.dumps(rng_state()))
    _barrier(engine)
    committer = _share_files(tmp, engine)
    if committer:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        commit_dir(tmp, final)
        _prune(root, keep)
    _barrier(engine)
    return final


def agreed_checkpoint(run_dir: Path, engine: Engine) -> Path | None:
    """The newest checkpoint complete in every rank's ``run_dir`` (``None`` if there is none).

    A rank killed between the commits of two folders leaves one a step ahead; all ranks then
    resume from the step they all hold, so no step is lost on one rank and redone on another.
    """
    folder = Path(run_dir) / "checkpoints"
    mine = set(_complete_steps(folder))
    every = _all_gather(sorted(mine), engine)
    common = set.intersection(*(set(steps) for steps in every)) if every else mine
    return folder / f"step-{max(common):08d}" if common else None


def _complete_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return [
        int(m.group(1))
        for path in folder.iterdir()
        if (m := CHECKPOINT_DIR.match(path.name)) and (path / STATE_FILE).is_file()
    ]


def _make_tmp(tmp: Path, engine: Engine) -> None:
    """An empty ``tmp`` on every rank: rank 0's, or the rank's own when it sees another disk."""
    token = secrets.token_hex(8) if engine.rank == 0 else ""
    if engine.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / ".token").write_text(token)
    token = _all_gather(token, engine)[0] if engine.world_size > 1 else token
    marker = tmp / ".token"
    if engine.rank != 0 and not (marker.is_file() and marker.read_text() == token):
        shutil.rmtree(tmp, ignore_errors=True)  # a folder of this rank's own, maybe stale
        tmp.mkdir(parents=True)
    _barrier(engine)
    if engine.rank == 0:
        marker.unlink()


def _share_files(tmp: Path, engine: Engine) -> bool:
    """Give every rank's ``tmp`` the files the others wrote; whether this rank commits it.

    The lowest rank whose files this folder holds commits it: rank 0 on a shared disk, each
    node's (or each rank's) first otherwise.
    """
    if engine.world_size == 1:
        return True
    seen = sorted(int(p.stem.removeprefix("rng-rank")) for p in tmp.glob("rng-rank*.json"))
    if all(len(view) == engine.world_size for view in _all_gather(seen, engine)):
        return engine.rank == 0  # one shared folder: nothing to move
    committer = seen[0] == engine.rank  # the lowest rank of each folder offers its files
    files = (
        {str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
        if committer
        else {}
    )
    for offered in _all_gather(files, engine):
        for name, content in offered.items():
            path = tmp / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
    _barrier(engine)
    return committer


def _all_gather(value: Any, engine: Engine) -> list[Any]:
    if engine.world_size == 1:
        return [value]
    gathered: list[Any] = [None] * engine.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def load_checkpoint(path: Path, engine: Engine) -> dict[str, Any]:
    """Restore the engine and this rank's RNG states; returns the saved loop state."""
    engine.load(path)
    rng_file = path / f"rng-rank{engine.rank}.json"
    if rng_file.is_file():
        set_rng_state(json.loads(rng_file.read_text()))
    state: dict[str, Any] = json.loads((path / STATE_FILE).read_text())
    return state


def remove_partial(run_dir: Path) -> None:
    """Delete checkpoints a crash left half-written."""
    for leftover in (Path(run_dir) / "checkpoints").glob(".step-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain JSON data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _prune(root: Path, keep: int) -> None:
    complete = sorted(p for p in root.iterdir() if CHECKPOINT_DIR.match(p.name))
    for old in complete[:-keep]:
        (old / STATE_FILE).unlink(missing_ok=True)  # first, so a half-deleted one is not complete
        shutil.rmtree(old, ignore_errors=True)


def _barrier(engine: Engine) -> None:
    if engine.world_size > 1:
        dist.barrier()
