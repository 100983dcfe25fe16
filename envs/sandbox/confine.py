"""Confinement the sandbox child applies to itself before it runs any untrusted code.

In order (steps 1-2 in :func:`isolate`, 3-5 in :func:`restrict`), each step recorded in
a report (what worked, what did not and why):

1. **Namespaces**: a new network namespace (no interfaces but a downed loopback, so no
   network), mount, IPC (no System V or POSIX message queue, semaphore or shared memory of
   another sample, and none outlives the child) and PID namespace (no other process can be
   named); as non-root a new user namespace too, which is what lets an unprivileged process
   create the others, and in which the program runs as the overflow user (``nobody``), not
   as the caller. For the PID namespace the child forks twice: the first process of the
   namespace only waits (a tiny init), the second runs the program, so the program gets
   the usual signal actions (``SIGXCPU`` at the CPU-time limit ends it); each waiting
   process passes on how the one below it ended.
2. **File system**: a fresh read-only root (a small tmpfs over the run's private folder,
   entered with ``pivot_root``, or ``chroot`` where that is refused; the old root is
   detached) holding only, at their usual paths, read-only binds of the shared-library
   folders (:data:`rootfs.LIBRARY_FOLDERS`, links such as ``/lib -> usr/lib`` copied as links),
   of the folders of the libraries the interpreter loaded (``/proc/self/maps``), of the
   interpreter's ``sys.path`` folders under ``sys.prefix``/``sys.base_prefix`` or named
   ``site-packages``, of :data:`rootfs.FILES` and :data:`rootfs.DEVICES`, and the working folder: a
   size-limited private tmpfs at its host path, gone with the child. The host's other
   files (``/home``, ``/root``, repositories, data, ``/sys``, ``/proc``, ``/tmp``, the
   run's job files) are not there at all.
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
    from . import rootfs, seccomp
except ImportError:  # the sandbox child imports this file as a top-level module
    import rootfs  # type: ignore[import-not-found, no-redef]
    import seccomp  # type: ignore[import-not-found, no-redef]

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
CLONE_NEWIPC, CLONE_NEWPID = 0x08000000, 0x20000000
MS_NOSUID, MS_NODEV = 0x2, 0x4
MS_REC, MS_PRIVATE = 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
FALLBACK_NPROC = 64
PER_CHILD_UID_BASE = 1 << 30
"""As root with ``uid="per-child"``, each child runs as this plus its process id: no two
live children share a user, so none can signal, trace or re-limit another, and a limit on
threads (``RLIMIT_NPROC``) counts one child's threads only."""
OVERFLOW_ID = 65534
"""The user and group the program has inside its user namespace (as non-root), unless the
kernel names another overflow id."""
STRICT_NAMESPACES = ("network", "mount", "pid")

_libc = ctypes.CDLL(None, use_errno=True)


def isolate(settings: dict[str, Any]) -> dict[str, Any]:
    """Steps 1 and 2: namespaces and the file system view; never raises for a step that fails.

    With a new PID namespace, the calling process forks twice: the grandchild, the second
    process of the namespace, returns and goes on; the others wait, and each ends the way
    the process it waits for ended (so the parent sees the program's exit status).

    Args:
        settings: As for :func:`restrict`; ``uid="per-child"`` is resolved here, in place,
            and ``work_bytes``/``work_files`` size the private working folder.

    Returns:
        The report so far; ``view`` says which file system the program sees.
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
    none = report["namespaces"].startswith("none")
    report["network"] = "seccomp only" if none else "namespace"
    # Without private propagation a mount would show up on the host: mount nothing then.
    if mount:
        report["view"], report["work"] = _minimal_view(settings)
    else:
        report["view"], report["work"] = "host (no private mount namespace)", "host folder"
    return report


def shortfall(report: dict[str, Any]) -> str | None:
    """What the strict isolation lacks in ``report``, or ``None`` when nothing is missing.

    Strict isolation needs network, mount and PID namespaces and the minimal view.
    """
    namespaces = report.get("namespaces", "none")
    missing = [n for n in STRICT_NAMESPACES if n not in namespaces.split(" ")[0].split("+")]
    if missing:
        return f"no {'/'.join(missing)} namespace ({namespaces})"
    if not str(report.get("view", "")).startswith("minimal"):
        return f"no minimal file system view ({report.get('view')})"
    return None


def _minimal_view(settings: dict[str, Any]) -> tuple[str, str]:
    """Build the program's file system (step 2) around the working folder.

    Returns:
        ``(view, work)``: what the program sees and what its working folder is.
    """
    work = os.getcwd()
    base = os.path.dirname(work)  # the run's private folder: it becomes the new root
    try:
        rootfs.prepare_root(base)
        work_report = _private_work(base + work, settings)
        if not work_report.startswith("tmpfs"):
            raise OSError(work_report)
        how = rootfs.enter_root(base, work)
    except OSError as exc:
        rootfs.abandon_root(base)
        os.chdir(work)
        return f"host ({exc})", _private_work(work, settings)
    return f"minimal ({how})", work_report


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
    if "user" in report["namespaces"].split(" ")[0].split("+"):
        report["user"] = f"uid {os.getuid()} in its own user namespace (not the caller's)"
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
    """Fork a tiny init into the new PID namespace, and the program's process under it.

    Only the program's process (the second of the namespace) returns. The first process
    of a PID namespace gets no default signal actions (a ``SIGXCPU`` would be ignored),
    so it only waits; it tells the process outside, through a pipe, how the program ended.
    The process outside ends the namespace on ``SIGTERM`` and reaps it before it goes, so
    no process of the sandbox outlives the parent's kill.
    """
    child: list[int] = []  # while it is not reaped

    def end_child(*_: Any) -> None:
        for pid in child:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, end_child)
    relay_read, relay_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(relay_read)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent(None)
        _init(relay_write)
        return
    os.close(relay_write)
    child.append(pid)
    status = _reap(pid)
    child.clear()
    relayed = os.read(relay_read, 32)
    if relayed.isdigit() and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        status = int(relayed)
    _end_as(status)


def _init(relay: int) -> None:
    """As the first process of the PID namespace: fork the program's process and wait."""
    pid = os.fork()
    if pid == 0:
        os.close(relay)
        return
    status = _reap(pid)
    with contextlib.suppress(OSError):
        os.write(relay, str(status).encode())
    os._exit(0)


def _reap(pid: int) -> int:
    """Wait for ``pid`` to end; its wait status (``70 << 8`` if it cannot be waited for)."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 70 << 8


def _end_as(status: int) -> None:
    """End this process the way a process with wait status ``status`` ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 70)


def _private_work(work: str, settings: dict[str, Any]) -> str:
    """Mount a size-limited tmpfs on the folder ``work``; it vanishes with the namespace."""
    options = f"size={int(settings['work_bytes'])},nr_inodes={int(settings['work_files'])}"
    options += ",mode=0700"
    if os.geteuid() == 0 and settings.get("uid") is not None:
        options += f",uid={settings['uid']},gid={settings['gid']}"
    os.makedirs(work, exist_ok=True)
    flags = MS_NOSUID | MS_NODEV
    if _libc.mount(b"tmpfs", work.encode(), b"tmpfs", flags, options.encode()) != 0:
        return f"host folder (tmpfs: {os.strerror(ctypes.get_errno())})"
    if os.path.abspath(work) == os.path.abspath(os.getcwd()):
        os.chdir(work)  # onto the new mount
    return f"tmpfs of {settings['work_bytes']} bytes, {settings['work_files']} files"


def _map_user(uid: int, gid: int) -> None:
    """Map the caller's ids to the overflow ids in its new user namespace.

    The program then runs as ``nobody`` there, not as the caller; it keeps every
    capability in the namespace until :func:`restrict` drops them.
    """
    inside = {}
    for kind in ("uid", "gid"):
        try:
            with open(f"/proc/sys/kernel/overflow{kind}", encoding="ascii") as file:
                inside[kind] = int(file.read())
        except (OSError, ValueError):
            inside[kind] = OVERFLOW_ID
    with contextlib.suppress(OSError):
        for name, text in (("setgroups", "deny"), ("uid_map", f"{inside['uid']} {uid} 1"),
                           ("gid_map", f"{inside['gid']} {gid} 1")):  # fmt: skip
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)


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
    cpu = max(1, round(float(settings["cpu_seconds"])))
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
