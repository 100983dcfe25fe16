"""Removing what a program left on disk: without recursion, without following links, in time.

A program may leave a folder thousands of levels deep, paths longer than the system allows,
folders it made unreadable, or so many files that removing them takes long.
:func:`remove_tree` walks the tree with one open folder at a time (relative to it, so no
path grows long), with a loop instead of recursion, and gives up at a deadline.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CleanupTimeout(Exception):
    """The tree was not removed before the deadline."""


def remove_tree(path: str, seconds: float) -> None:
    """Remove the folder ``path`` and all it holds, within ``seconds``.

    Symbolic links are removed, never followed. Folders the program made unreadable are
    made readable again first.

    Args:
        path: The folder.
        seconds: The time allowed.

    Raises:
        CleanupTimeout: If time ran out (what is left stays on disk).
        OSError: If something could not be removed.
    """
    deadline = time.monotonic() + seconds
    _make_searchable(path, None)
    folder = os.open(path, _DIRECTORY)
    names: list[str] = []  # the path from ``path`` down to ``folder``, one name per level
    try:
        while True:
            if time.monotonic() > deadline:
                raise CleanupTimeout(f"{path} was not removed within {seconds:g} s")
            below = _empty_or_descend(folder)
            if below is not None:
                _make_searchable(below, folder)
                child = os.open(below, _DIRECTORY, dir_fd=folder)
                os.close(folder)
                folder = child
                names.append(below)
                continue
            if not names:
                break
            parent = os.open("..", _DIRECTORY, dir_fd=folder)
            os.close(folder)
            folder = parent
            os.rmdir(names.pop(), dir_fd=folder)
    finally:
        os.close(folder)
    os.rmdir(path)


def _empty_or_descend(folder: int) -> str | None:
    """Remove every file of ``folder``; return the name of a subfolder, if one is left."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=folder)
    return None


def _make_searchable(name: str, parent: int | None) -> None:
    """Give the owner full rights on a folder a program locked (no effect as root)."""
    with contextlib.suppress(OSError):
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode) and mode & stat.S_IRWXU != stat.S_IRWXU:
            os.chmod(name, stat.S_IRWXU, dir_fd=parent)
