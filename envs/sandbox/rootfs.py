"""The program's file system: a fresh read-only root holding only what the interpreter needs.

Step 2 of the confinement in :mod:`confine`: a small tmpfs becomes the new root and receives
read-only binds, at their usual paths, of the shared-library folders, the folders of the
libraries the interpreter loaded, the interpreter's ``sys.path`` folders, a few files and
devices; the caller mounts the working folder into it before :func:`enter_root`.

Only the standard library and :mod:`ctypes` are used: this runs in the bare child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MNT_DETACH = 0x20, 0x1000, 0x4000, 0x2
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 0x400, 0x800, 0x200000
LIBRARY_FOLDERS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32")
"""Where the dynamic loader finds shared libraries (bound whole, read-only)."""
FILES = ("/etc/ld.so.cache",)
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
ROOT_OPTIONS = b"size=256k,nr_inodes=1024,mode=0755"
# Flags a mount in a user namespace may have locked: a read-only remount must keep them.
_KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME
_ST_RELATIME = 0x1000
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)

_libc = ctypes.CDLL(None, use_errno=True)


def view_paths() -> list[str]:
    """The host paths the program's view holds (besides the working folder), in bind order.

    Returns:
        Library folders first, then the interpreter's folders, files and devices.
    """
    prefixes = {os.path.normpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    python = [
        os.path.normpath(p)
        for p in sys.path
        if p and os.path.isabs(p) and os.path.exists(p)
        and (_under_any(os.path.normpath(p), prefixes) or "site-packages" in p)
    ]  # fmt: skip
    paths = [p for p in LIBRARY_FOLDERS if os.path.lexists(p)]
    paths += [*_loaded_library_folders(), *python, *FILES, *DEVICES]
    return [p for i, p in enumerate(paths) if os.path.lexists(p) and p not in paths[:i]]


def _loaded_library_folders() -> list[str]:
    """Folders of the shared libraries mapped into this process (``libpython``, ...)."""
    folders = []
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            path = fields[5].strip() if len(fields) == 6 else ""
            if path.startswith("/") and ".so" in os.path.basename(path):
                folders.append(os.path.dirname(path))
    return folders


def prepare_root(root: str) -> None:
    """Mount the new root on the folder ``root`` and bind into it what the program needs.

    Args:
        root: An existing folder (the run's private folder); hidden under the new root.

    Raises:
        OSError: If a mount failed (the caller then :func:`abandon_root` s it).
    """
    _mount(b"tmpfs", root, b"tmpfs", MS_NOSUID | MS_NODEV, ROOT_OPTIONS)
    for path in view_paths():
        target = root + path
        if os.path.islink(path):
            _copy_link(path, target)
        elif not _reachable(root, path):
            _bind(path, target, device=path in DEVICES)


def enter_root(root: str, work: str) -> str:
    """Make ``root`` the root of this mount namespace, read-only, and go to ``work``.

    Returns:
        How: ``"pivot_root"`` or ``"chroot"``.

    Raises:
        OSError: If neither worked.
    """
    os.chdir(root)
    how = "pivot_root"
    if _libc.syscall(_SYS_PIVOT_ROOT, b".", b".") == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "umount of the old root")
    else:
        how = "chroot"
        os.chroot(".")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    os.chdir(work)
    return how


def abandon_root(root: str) -> None:
    """Detach a root that :func:`prepare_root` could not finish, and everything under it."""
    _libc.umount2(root.encode(), MNT_DETACH)


def _reachable(root: str, path: str) -> bool:
    """Whether ``path`` already resolves in the new root (inside a folder bound earlier)."""
    parts = path.strip("/").split("/")
    current = root
    for part in parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            target = os.readlink(current)
            if os.path.isabs(target):
                return False
            current = os.path.normpath(os.path.join(os.path.dirname(current), target))
            if not _under_any(current, {root}):
                return False
        if os.path.ismount(current) and current != root:
            return True
        if not os.path.lexists(current):
            return False
    return False


def _copy_link(path: str, target: str) -> None:
    """The link at ``path``, made relative so it never leads out of the new root."""
    destination = os.path.join(os.path.dirname(path), os.readlink(path))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.relpath(os.path.normpath(destination), os.path.dirname(path)), target)


def _bind(source: str, target: str, device: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
    _mount(source.encode(), target, None, MS_BIND | MS_REC, None)
    found = os.statvfs(target).f_flag
    kept = found & _KEPT_FLAGS | (MS_RELATIME if found & _ST_RELATIME else 0)
    flags = kept | MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (0 if device else MS_NODEV)
    _mount(None, target, None, flags, None)


def _mount(
    source: bytes | None, target: str, kind: bytes | None, flags: int, data: bytes | None
) -> None:
    _check(_libc.mount(source, target.encode(), kind, flags, data), f"mount on {target}")


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _under_any(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)
