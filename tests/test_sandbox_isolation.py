"""Samples cannot reach each other or the host's disk: namespaces, users, limits per child."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pytest

from thoughtmdp.envs.sandbox.sandbox import Job, Sandbox, SandboxConfig, run_all

IS_ROOT = os.geteuid() == 0
SHM_KEY = 0x7D3A11


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    config = SandboxConfig(test_timeout=3.0, work_bytes=8 << 20, work_files=1000)
    box = Sandbox(config)
    yield box
    box.close()


def output(sandbox: Sandbox, code: str) -> list[str]:
    report = sandbox.run(Job(code, "script", ("",)))
    assert report.outcomes[0].status == "ok", report.outcomes[0]
    return (report.outcomes[0].output or "").split()


def test_shared_memory_of_one_sample_is_not_seen_by_the_next(sandbox: Sandbox) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    make = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.shmget({SHM_KEY}, 1 << 20, 0o1666) >= 0)"  # IPC_CREAT | 0666
    )
    find = f"import ctypes\nprint(ctypes.CDLL(None).shmget({SHM_KEY}, 0, 0o666) >= 0)"
    try:
        assert output(sandbox, make) == ["True"]
        assert output(sandbox, find) == ["False"]
        assert libc.shmget(SHM_KEY, 0, 0) < 0  # nothing stays pinned on the host
    finally:
        segment = libc.shmget(SHM_KEY, 0, 0)
        if segment >= 0:
            libc.shmctl(segment, 0, None)  # IPC_RMID


def test_each_child_is_alone_in_its_process_namespace(sandbox: Sandbox) -> None:
    # The first process of the namespace only waits: the program runs under it, with the
    # usual signal actions.
    assert output(sandbox, "import os\nprint(os.getpid(), os.getppid())") == ["2", "1"]


@pytest.mark.skipif(not IS_ROOT, reason="per-child users are made as root")
def test_concurrent_children_run_as_different_users(sandbox: Sandbox) -> None:
    job = Job("import os, time\ntime.sleep(0.3)\nprint(os.getuid())", "script", ("",))
    reports = run_all(sandbox, [job, job])
    uids = {r.outcomes[0].output for r in reports}
    assert len(uids) == 2 and "0\n" not in uids


def test_no_signals_through_files_and_no_memory_files(sandbox: Sandbox) -> None:
    code = (
        "import fcntl, os\nr, w = os.pipe()\n"
        "for command in (fcntl.F_SETOWN, 10):  # F_SETSIG\n"
        "    try:\n        fcntl.fcntl(r, command, os.getpid())\n        print('allowed')\n"
        "    except OSError:\n        print('refused')\n"
        "try:\n    os.memfd_create('x')\n    print('allowed')\n"
        "except OSError:\n    print('refused')\n"
        "print(fcntl.fcntl(r, fcntl.F_GETFL) >= 0)"
    )
    assert output(sandbox, code) == ["refused", "refused", "refused", "True"]


def test_threads_are_capped(sandbox: Sandbox) -> None:
    code = (
        "import threading\nthreading.stack_size(65536)\ngo = threading.Event()\nmade = 0\n"
        "for _ in range(300):\n    try:\n        threading.Thread(target=go.wait).start()\n"
        "        made += 1\n    except RuntimeError:\n        break\ngo.set()\nprint(made)"
    )
    made = int(output(sandbox, code)[0])
    assert made < 64


def test_the_working_folder_is_a_small_private_tmpfs(sandbox: Sandbox) -> None:
    code = (
        "import os\nprint(os.getcwd())\nfiles = 0\ntry:\n    for i in range(5000):\n"
        "        open(f'f{i}', 'w').close()\n        files += 1\nexcept OSError:\n    pass\n"
        "print(files)\nfor i in range(files):\n    os.remove(f'f{i}')\nwritten = 0\n"
        "try:\n    for i in range(4):\n        with open(f'big{i}', 'wb') as f:\n"
        "            f.write(bytes(4 << 20))\n        written += 1\nexcept OSError:\n    pass\n"
        "print(written)"
    )
    work, files, written = output(sandbox, code)
    assert int(files) < 1000 and int(written) == 2  # of 4 files of 4 MiB, in 8 MiB
    assert not os.path.exists(work)
