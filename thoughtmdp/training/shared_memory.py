"""The shared-memory files (``/dev/shm``) a process group holds open, to remove after a kill.

vLLM's engine processes talk through ``multiprocessing.shared_memory`` blocks, hundreds of
MiB each. An engine that shuts down removes them; one that is killed leaves them behind, and
they hold memory until someone deletes them. The launcher records which files its children's
process groups had mapped or open before it kills them, and removes those that remain.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SHM = "/dev/shm/"
PROC = Path("/proc")


def group_members(group: int) -> list[int]:
    """Process ids whose process group is ``group`` (Linux ``/proc``; empty elsewhere)."""
    members = []
    for entry in PROC.glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[2]) == group:
                members.append(int(entry.name))
    return members


def shared_memory_files(group: int) -> set[Path]:
    """Files under ``/dev/shm`` mapped or open in any process of ``group``."""
    found: set[Path] = set()
    for pid in group_members(group):
        with contextlib.suppress(OSError):
            for line in (PROC / str(pid) / "maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if path.startswith(SHM):
                    found.add(Path(path.removesuffix(" (deleted)")))
        with contextlib.suppress(OSError):
            for fd in (PROC / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(SHM):
                        found.add(Path(target.removesuffix(" (deleted)")))
    return found


def remove_files(files: set[Path]) -> None:
    """Delete the files that still exist."""
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
