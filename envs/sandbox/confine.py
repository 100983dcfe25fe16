"""Confinement the sandbox child applies to itself before it runs any untrusted code.

In order (steps 1-2 in :func:`isolate`, 3-5 in :func:`restrict`), each step recorded in
a report (what worked, what did not and why):

1. **Namespaces**: a new network namespace (no interfaces but a downed loopback, so no
   network) and a new mount namespace; as non-root a new user namespace first, which is
   what lets an unprivileged process create the other two.
2. **Mounts**: empty read-only file systems over the world-writable folders (``/tmp``,
   ``/var/tmp``, ``/dev/shm``, ``/run/lock``), over ``/proc`` (no view of other
   processes, their command lines or environments) and over the run's private folder
   around the working folder. The working folder, entered before, stays usable through
   relative paths. Folders of the interpreter that the sandbox user
   could not reach (a Python installed under root's private home) are bound read-only
   under ``/tmp/.python``, so the program can still import the standard library.
3. **Identity**: as root, switch to an unprivileged user (``nobody`` by default) with no
   supplementary groups, so root-owned files cannot be written or read unless world-
   readable; then drop every capability and forbid new privileges.
4. **seccomp** (:mod:`seccomp`): no new processes, no exec, no signals to others.
5. **Resource limits**: address space, file size, CPU time, open files, no core dumps;
   when seccomp is unavailable, a process-count limit as a fallback.

Only the standard library and :mod:`ctypes` are used: this runs in the bare child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import stat
from typing import Any

try:
    from . import seccomp
except ImportError:  # the sandbox child imports this file as a top-level module
    import seccomp  # type: ignore[import-not-found, no-redef]

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
MASKED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/proc")
"""Folders hidden under an empty read-only file system, when they exist."""
EXPOSED = "/tmp/.python"
"""Where folders the sandbox user could not reach are bound, read-only (see :func:`isolate`)."""
FALLBACK_NPROC = 64

_libc = ctypes.CDLL(None, use_errno=True)


def isolate(expose: list[str]) -> dict[str, Any]:
    """Steps 1 and 2: namespaces and mounts; never raises for a step that fails.

    Args:
        expose: Folders the sandbox user cannot reach (the interpreter's library under a
            private home, say) to bind read-only under :data:`EXPOSED`.

    Returns:
        The report so far, with ``exposed``: each exposed folder and where it now is.
    """
    report: dict[str, Any] = {"started_as_root": os.geteuid() == 0}
    report["namespaces"] = _namespaces()
    private = report["namespaces"] in ("network+mount", "network+mount+user")
    report["network"] = "namespace" if report["namespaces"] != "none" else "seccomp only"
    # Without private propagation a mount would show up on the host: mount nothing then.
    report["masked"], report["exposed"] = _mask_folders(expose) if private else ([], {})
    return report


def restrict(settings: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Steps 3 to 5: user, capabilities, seccomp, resource limits; never raises.

    Args:
        settings: ``uid``/``gid`` (the user to become when root, or ``None``),
            ``memory``/``file_size`` (bytes), ``cpu_seconds``, ``open_files``,
            ``parent_pid`` (die with it).
        report: The report of :func:`isolate`, completed in place.

    Returns:
        The report: one entry per mechanism, saying what was achieved.
    """
    report["user"] = _switch_user(settings.get("uid"), settings.get("gid"))
    report["capabilities"] = _drop_capabilities()
    _die_with_parent(settings.get("parent_pid"))
    report["seccomp"] = seccomp.install()
    report["rlimits"] = _limit_resources(settings, fallback=report["seccomp"] != "installed")
    return report


def _namespaces() -> str:
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | (0 if root else CLONE_NEWUSER)
    if _libc.unshare(flags) != 0:
        first = os.strerror(ctypes.get_errno())
        # A platform that forbids mount namespaces may still allow a network one.
        if _libc.unshare(CLONE_NEWNET | (0 if root else CLONE_NEWUSER)) != 0:
            return f"none ({first})"
        if not root:
            _map_user(uid, gid)
        return f"network only ({first})"
    if not root:
        _map_user(uid, gid)
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return f"network+mount, not private ({os.strerror(ctypes.get_errno())})"
    return "network+mount" + ("" if root else "+user")


def _map_user(uid: int, gid: int) -> None:
    """Map the caller's ids to themselves in its new user namespace."""
    with contextlib.suppress(OSError):
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)


def _mask_folders(expose: list[str]) -> tuple[list[str], dict[str, str]]:
    masked: list[str] = []
    exposed: dict[str, str] = {}
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    # The working folder's parent (the run's private folder) first, while its path still
    # resolves: "../" then leads to an empty read-only file system, also for non-root.
    for folder in (os.path.dirname(os.getcwd()), *MASKED):
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        target = folder.encode()
        if _libc.mount(b"tmpfs", target, b"tmpfs", flags, b"size=64k,mode=0755") != 0:
            continue
        if folder == os.path.dirname(EXPOSED):
            exposed = _expose(expose)
        read_only = _libc.mount(None, target, None, MS_REMOUNT | MS_RDONLY | flags, None) == 0
        masked.append(folder if read_only else f"{folder} (empty but writable)")
    return masked, exposed


def _expose(folders: list[str]) -> dict[str, str]:
    exposed = {}
    for index, folder in enumerate(folders):
        target = os.path.join(EXPOSED, str(index))
        with contextlib.suppress(OSError):
            os.makedirs(target, 0o755)
            if _libc.mount(folder.encode(), target.encode(), None, MS_BIND | MS_REC, None) == 0:
                flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
                _libc.mount(None, target.encode(), None, flags, None)
                exposed[folder] = target
    return exposed


def _switch_user(uid: int | None, gid: int | None) -> str:
    if os.geteuid() != 0:
        return f"unchanged (uid {os.getuid()}, not root)"
    if uid is None:
        return "root (no user switch configured)"
    group = uid if gid is None else gid
    try:
        os.setgroups([])
        os.setresgid(group, group, group)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        return f"root (switch to uid {uid} failed: {exc})"
    return f"uid {uid}, gid {group}"


def _drop_capabilities() -> str:
    """Clear the effective, permitted and inheritable sets (``capset``)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(header, data) != 0:
        return f"kept ({os.strerror(ctypes.get_errno())})"
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    return "none"


def _die_with_parent(parent_pid: int | None) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(70)  # the parent died before the death signal was armed


def _limit_resources(settings: dict[str, Any], fallback: bool) -> dict[str, int]:
    cpu = int(settings["cpu_seconds"])
    limits = {
        "RLIMIT_AS": int(settings["memory"]),
        "RLIMIT_FSIZE": int(settings["file_size"]),
        "RLIMIT_CPU": cpu,
        "RLIMIT_NOFILE": int(settings["open_files"]),
        "RLIMIT_CORE": 0,
    }
    if fallback:
        limits["RLIMIT_NPROC"] = FALLBACK_NPROC
    applied = {}
    for name, value in limits.items():
        kind = getattr(resource, name)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL after
        try:
            resource.setrlimit(kind, (value, hard))
            applied[name] = value
        except (OSError, ValueError):
            pass
    return applied


def world_readable(path: str) -> bool:
    """Whether any user may read ``path``: every folder above it searchable by others.

    Args:
        path: A file or folder.

    Returns:
        True when ``path`` has the read bit for others and each parent the execute bit.
    """
    path = os.path.abspath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False
