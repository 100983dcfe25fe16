"""Confinement the sandbox child applies to itself before it runs any untrusted code.

In order (steps 1-2 in :func:`isolate`, 3-5 in :func:`restrict`), each step recorded in
a report (what worked, what did not and why):

1. **Namespaces**: a new network namespace (no interfaces but a downed loopback, so no
   network), mount, IPC (no System V or POSIX message queue, semaphore or shared memory of
   another sample, and none outlives the child) and PID namespace (no other process can be
   named); as non-root a new user namespace too, which is what lets an unprivileged process
   create the others. For the PID namespace the child forks once: the first process of the
   namespace runs the program, its parent waits and passes on how it ended.
2. **Mounts**: a size-limited private tmpfs as the working folder (gone with the child), and
   empty read-only file systems over the world-writable folders (``/tmp``,
   ``/var/tmp``, ``/dev/shm``, ``/run/lock``), over ``/proc`` (no view of other
   processes, their command lines or environments) and over the run's private folder
   around the working folder. The working folder, entered before, stays usable through
   relative paths. Folders of the interpreter that the sandbox user
   could not reach (a Python installed under root's private home) are bound read-only
   under ``/tmp/.python``, so the program can still import the standard library.
3. **Identity**: as root, switch to an unprivileged user (by default one of its own per
   child, see :data:`PER_CHILD_UID_BASE`) with no supplementary groups, so root-owned files
   cannot be written or read unless world-readable; then drop every capability and forbid
   new privileges.
4. **seccomp** (:mod:`seccomp`): no new processes, no exec, no signals to others, no
   acting on other processes, no memory files.
5. **Resource limits**: address space, file size, CPU time, open files, no core dumps,
   and threads (``RLIMIT_NPROC``) where the child's user is its own.

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
CLONE_NEWIPC, CLONE_NEWPID = 0x08000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
MASKED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/proc")
"""Folders hidden under an empty read-only file system, when they exist."""
EXPOSED = "/tmp/.python"
"""Where folders the sandbox user could not reach are bound, read-only (see :func:`isolate`)."""
FALLBACK_NPROC = 64
PER_CHILD_UID_BASE = 1 << 30
"""As root with ``uid="per-child"``, each child runs as this plus its process id: no two
live children share a user, so none can signal, trace or re-limit another, and a limit on
threads (``RLIMIT_NPROC``) counts one child's threads only."""

_libc = ctypes.CDLL(None, use_errno=True)


def isolate(expose: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Steps 1 and 2: namespaces and mounts; never raises for a step that fails.

    With a new PID namespace, the calling process forks: the child, the first process of
    the namespace, returns and goes on; the caller stays outside, waits for it, and ends
    the way it ended (so the parent sees the program's exit status).

    Args:
        expose: Folders the sandbox user cannot reach (the interpreter's library under a
            private home, say) to bind read-only under :data:`EXPOSED`.
        settings: As for :func:`restrict`; ``uid="per-child"`` is resolved here, in place,
            and ``work_bytes``/``work_files`` size the private working folder.

    Returns:
        The report so far, with ``exposed``: each exposed folder and where it now is.
    """
    root = os.geteuid() == 0
    report: dict[str, Any] = {"started_as_root": root}
    _resolve_user(settings)
    _die_with_parent(settings.get("parent_pid"))
    if root and settings.get("uid") is not None:
        with contextlib.suppress(OSError):  # a working folder on the host, if no tmpfs comes
            os.chown(".", settings["uid"], settings["gid"])
    report["namespaces"] = _namespaces()
    mount = "mount" in report["namespaces"] and "not private" not in report["namespaces"]
    report["network"] = "namespace" if report["namespaces"] != "none" else "seccomp only"
    # Without private propagation a mount would show up on the host: mount nothing then.
    report["work"] = _private_work(settings) if mount else "host folder"
    report["masked"], report["exposed"] = _mask_folders(expose) if mount else ([], {})
    return report


def _resolve_user(settings: dict[str, Any]) -> None:
    """Turn ``uid="per-child"`` into a number no other live child has (as root)."""
    if settings.get("uid") == "per-child":
        settings["uid"] = PER_CHILD_UID_BASE + os.getpid() if os.geteuid() == 0 else None
    if settings.get("gid") in (None, "per-child"):
        settings["gid"] = settings.get("uid")


def restrict(settings: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Steps 3 to 5: user, capabilities, seccomp, resource limits; never raises.

    Args:
        settings: ``uid``/``gid`` (the user to become when root, or ``None``),
            ``memory``/``file_size`` (bytes), ``cpu_seconds``, ``open_files``,
            ``threads`` (tasks the user may run, where it is this child's alone),
            ``parent_pid`` (die with it).
        report: The report of :func:`isolate`, completed in place.

    Returns:
        The report: one entry per mechanism, saying what was achieved.
    """
    report["user"] = _switch_user(settings.get("uid"), settings.get("gid"))
    report["capabilities"] = _drop_capabilities()
    in_pid_namespace = "pid" in report["namespaces"]
    # The death signal is cleared by the user switch: armed again here. Inside a PID
    # namespace the parent (the waiting process) has no id to check.
    _die_with_parent(None if in_pid_namespace else settings.get("parent_pid"))
    report["seccomp"] = seccomp.install()
    own_user = os.getuid() >= PER_CHILD_UID_BASE or "user" in report["namespaces"]
    threads = settings.get("threads") if own_user else None
    if report["seccomp"] != "installed":
        threads = min(threads or FALLBACK_NPROC, FALLBACK_NPROC)
    report["rlimits"] = _limit_resources(settings, threads)
    return report


def _namespaces() -> str:
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    user = 0 if root else CLONE_NEWUSER
    names = {CLONE_NEWNET: "network", CLONE_NEWNS: "mount", CLONE_NEWIPC: "ipc",
             CLONE_NEWPID: "pid", CLONE_NEWUSER: "user"}  # fmt: skip
    first = ""
    # A platform that forbids some namespaces may still allow the others.
    for flags in (CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | user,
                  CLONE_NEWNET | CLONE_NEWNS | user, CLONE_NEWNET | user):  # fmt: skip
        if _libc.unshare(flags) == 0:
            break
        first = first or os.strerror(ctypes.get_errno())
    else:
        return f"none ({first})"
    if not root:
        _map_user(uid, gid)
    achieved = "+".join(name for bit, name in names.items() if flags & bit)
    if first:
        achieved += f" ({first} for the others)"
    if flags & CLONE_NEWNS and _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return f"{achieved}, mount not private ({os.strerror(ctypes.get_errno())})"
    if flags & CLONE_NEWPID:
        _enter_pid_namespace()
    return achieved


def _enter_pid_namespace() -> None:
    """Fork into the new PID namespace; only the child returns (see :func:`isolate`).

    The waiting parent ends the child on ``SIGTERM`` and reaps it before it goes, so no
    process of the sandbox outlives the parent's kill.
    """
    child: list[int] = []  # while it is not reaped

    def end_child(*_: Any) -> None:
        for pid in child:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, end_child)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return
    child.append(pid)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        os._exit(70)
    child.clear()
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 70)


def _private_work(settings: dict[str, Any]) -> str:
    """Mount a size-limited tmpfs on the working folder; it vanishes with the namespace."""
    work = os.getcwd()
    options = f"size={int(settings['work_bytes'])},nr_inodes={int(settings['work_files'])}"
    options += ",mode=0700"
    if os.geteuid() == 0 and settings.get("uid") is not None:
        options += f",uid={settings['uid']},gid={settings['gid']}"
    flags = MS_NOSUID | MS_NODEV
    if _libc.mount(b"tmpfs", work.encode(), b"tmpfs", flags, options.encode()) != 0:
        return f"host folder (tmpfs: {os.strerror(ctypes.get_errno())})"
    os.chdir(work)
    return f"tmpfs of {settings['work_bytes']} bytes, {settings['work_files']} files"


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


def _limit_resources(settings: dict[str, Any], threads: int | None) -> dict[str, int]:
    cpu = int(settings["cpu_seconds"])
    limits = {
        "RLIMIT_AS": int(settings["memory"]),
        "RLIMIT_FSIZE": int(settings["file_size"]),
        "RLIMIT_CPU": cpu,
        "RLIMIT_NOFILE": int(settings["open_files"]),
        "RLIMIT_CORE": 0,
    }
    if threads is not None:
        limits["RLIMIT_NPROC"] = int(threads)
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
