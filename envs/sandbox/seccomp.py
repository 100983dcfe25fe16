"""A seccomp filter for sandboxed programs: threads yes, processes, exec and spying no.

The filter is a small classic-BPF program built with :mod:`struct` and installed with
``prctl`` through :mod:`ctypes` (standard library only, so the sandbox child can use it).
It refuses, with an error the program sees as an ``OSError``:

- new processes: ``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD`` (``EAGAIN``), and
  ``clone3`` (``ENOSYS``, on which the C library falls back to ``clone`` for threads);
- ``execve``/``execveat``, so the process cannot become another program;
- signals to any process but itself, ``ptrace`` and cross-process memory access;
- acting on another process: ``prlimit64``, ``setpriority``, ``sched_setaffinity``,
  ``sched_setscheduler``, ``sched_setparam`` and ``sched_setattr`` only on itself (``0``
  or its own id), and no ``fcntl`` ``F_SETOWN``/``F_SETOWN_EX``/``F_SETSIG`` (which would
  let it signal another process through a file);
- ``memfd_create``: memory files live outside the address-space limit;
- sockets other than ``AF_UNIX`` (a second line behind the network namespace);
- namespace, mount, BPF, perf, userfaultfd, io_uring and keyring calls.

Only x86_64 and aarch64 are supported; elsewhere :func:`install` reports that it did not
install anything. Syscalls of another ABI (i386, x32) kill the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

_COMMON_DENIED = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsmount": 432, "pidfd_open": 434, "pidfd_getfd": 438,
}  # fmt: skip
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "clone": 56, "clone3": 435, "kill": 62, "tgkill": 234, "socket": 41,
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "ptrace": 101, "tkill": 200,
        "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns": 308,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
        "request_key": 249, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "prlimit64": 302, "sched_setaffinity": 203, "sched_setscheduler": 144,
        "sched_setparam": 142, "sched_setattr": 314, "setpriority": 141, "fcntl": 72,
        "memfd_create": 319,
    },
    "aarch64": {
        "clone": 220, "clone3": 435, "kill": 129, "tgkill": 131, "socket": 198,
        "execve": 221, "execveat": 281, "ptrace": 117, "tkill": 130,
        "process_vm_readv": 270, "process_vm_writev": 271, "unshare": 97, "setns": 268,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
        "request_key": 218, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "prlimit64": 261, "sched_setaffinity": 122, "sched_setscheduler": 119,
        "sched_setparam": 118, "sched_setattr": 274, "setpriority": 140, "fcntl": 25,
        "memfd_create": 279,
    },
}  # fmt: skip
"""Syscall numbers per machine; those in :data:`_CHECKED` get argument checks, the rest are
refused."""

_SELF_ONLY = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
              "sched_setattr")  # fmt: skip
"""Calls whose first argument names a process: allowed on ``0`` (itself) and its own id."""
_CHECKED = ("clone", "clone3", "kill", "tgkill", "socket", "setpriority", "fcntl", *_SELF_ONLY)
_F_SETOWN, _F_SETSIG, _F_SETOWN_EX = 8, 10, 15

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JSET, _RET = 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24  # offsets in struct seccomp_data (low words)
_CLONE_THREAD, _AF_UNIX, _X32_BIT = 0x00010000, 1, 0x40000000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    """One BPF instruction; a test skips ``jt`` instructions when it holds, ``jf`` when not."""
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _errno(code: int) -> int:
    return 0x00050000 | code


def build_filter(machine: str, pid: int) -> bytes:
    """The BPF program for ``machine``, letting ``pid`` signal only itself.

    Args:
        machine: ``"x86_64"`` or ``"aarch64"``.
        pid: The sandboxed process's id (also its process group, after ``setsid``).

    Returns:
        The instructions, 8 bytes each.

    Raises:
        KeyError: For an unsupported machine.
    """
    numbers = SYSCALLS[machine]
    code = [_insn(_LOAD_WORD, _ARCH), _insn(_JEQ, AUDIT_ARCH[machine], jt=1, jf=0)]
    code += [_insn(_RET, _KILL_PROCESS), _insn(_LOAD_WORD, _NR)]
    if machine == "x86_64":
        code += [_insn(_JGE, _X32_BIT, jt=0, jf=1), _insn(_RET, _KILL_PROCESS)]
    denied = {**_COMMON_DENIED, **{k: v for k, v in numbers.items() if k not in _CHECKED}}
    for number in sorted(set(denied.values())):
        code += [_insn(_JEQ, number, jt=0, jf=1), _insn(_RET, _errno(errno.EPERM))]
    code += [_insn(_JEQ, numbers["clone3"], jt=0, jf=1), _insn(_RET, _errno(errno.ENOSYS))]
    code += _argument_check(numbers["clone"], [], errno.EAGAIN, flag=_CLONE_THREAD)
    # Not 0, its process group: inside a PID namespace that group holds the waiting parent;
    # and never -1 (everyone), which is -pid for the first process of a PID namespace.
    code += _argument_check(numbers["kill"], [pid, -pid] if pid != 1 else [pid], errno.EPERM)
    code += _argument_check(numbers["tgkill"], [pid], errno.EPERM)
    code += _argument_check(numbers["socket"], [_AF_UNIX], errno.EACCES)
    for name in _SELF_ONLY:
        code += _argument_check(numbers[name], [0, pid], errno.EPERM)
    code += _argument_check(numbers["setpriority"], [0, pid], errno.EPERM, argument=_ARG1)
    code += _refuse_values(numbers["fcntl"], [_F_SETOWN, _F_SETSIG, _F_SETOWN_EX], errno.EPERM)
    return b"".join([*code, _insn(_RET, _ALLOW)])


def _argument_check(
    number: int, allowed: list[int], code: int, flag: int = 0, argument: int = _ARG0
) -> list[bytes]:
    """Refuse ``number`` unless an argument is in ``allowed`` (or has the bits of ``flag``).

    The block starts and ends with the syscall number in the accumulator, so blocks chain;
    a matching test jumps past the refusal to the final reload of the number.
    """
    if flag:
        tests = [_insn(_JSET, flag, jt=1, jf=0)]
    else:
        tests = [_insn(_JEQ, value, jt=len(allowed) - i, jf=0) for i, value in enumerate(allowed)]
    return [
        _insn(_JEQ, number, jt=0, jf=len(tests) + 3),
        _insn(_LOAD_WORD, argument),
        *tests,
        _insn(_RET, _errno(code)),
        _insn(_LOAD_WORD, _NR),
    ]


def _refuse_values(number: int, refused: list[int], code: int) -> list[bytes]:
    """Refuse ``number`` when argument 1 is in ``refused``; allow every other value."""
    tests = [_insn(_JEQ, value, jt=len(refused) - i, jf=0) for i, value in enumerate(refused)]
    return [
        _insn(_JEQ, number, jt=0, jf=len(tests) + 4),
        _insn(_LOAD_WORD, _ARG1),
        *tests,
        _insn(0x05, 1),  # BPF_JMP | BPF_JA: no match, skip the refusal
        _insn(_RET, _errno(code)),
        _insn(_LOAD_WORD, _NR),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> str:
    """Install the filter on the calling thread (and every thread it starts later).

    Returns:
        ``"installed"``, or why not (``"unsupported machine ..."``, ``"failed: ..."``).
    """
    machine = platform.machine()
    if machine not in SYSCALLS:
        return f"unsupported machine {machine}"
    program = build_filter(machine, os.getpid())
    buffer = ctypes.create_string_buffer(program, len(program))
    header = _Program(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"failed: no_new_privs: {os.strerror(ctypes.get_errno())}"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(header), 0, 0) != 0:
        return f"failed: {os.strerror(ctypes.get_errno())}"
    return "installed"
