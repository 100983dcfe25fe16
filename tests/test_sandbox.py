"""The sandbox against hostile programs: each ends within its limits, with the right verdict.

Every run also checks that nothing is left running (each child was its own process group,
and the group is empty afterwards) and that the run's folder is gone. Assertions are on
verdicts, never on timings.
"""

from __future__ import annotations

import asyncio
import os
import platform
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from thoughtmdp.envs.livecodebench.grading import CodeTest, TestResult, Verdict
from thoughtmdp.envs.livecodebench.judge import judge, make_job, verdict
from thoughtmdp.envs.sandbox.sandbox import Job, RunReport, Sandbox, SandboxConfig, SandboxError
from thoughtmdp.envs.sandbox.seccomp import SYSCALLS, build_filter

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxConfig(test_timeout=TIMEOUT, memory_bytes=512 << 20))
    yield box
    box.close()


@pytest.fixture(scope="module")
def isolation(sandbox: Sandbox) -> dict:
    return sandbox.probe()


def run(
    sandbox: Sandbox, code: str, tests: list[tuple[str, str]], func_name: str | None = None
) -> tuple[list[TestResult], RunReport]:
    """Run ``code`` on (input, expected) pairs; check that the host is left clean."""
    cases = [CodeTest(i, o) for i, o in tests]
    job = make_job(code, cases, func_name)
    report = sandbox.run(job)
    results = [verdict(o, cases[i], func_name is not None) for i, o in enumerate(report.outcomes)]
    for pid in report.pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # the whole process group is gone
    return results, report


def verdicts(results: list[TestResult]) -> list[Verdict]:
    return [r.verdict for r in results]


# -- isolation actually achieved ----------------------------------------------------------


def test_probe_reports_the_isolation_achieved(isolation: dict) -> None:
    assert isolation["network"] == "namespace", isolation
    assert set(isolation["rlimits"]) >= {"RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_CPU"}
    assert isolation["rlimits"]["RLIMIT_AS"] == 512 << 20
    if platform.machine() in SYSCALLS:
        assert isolation["seccomp"] == "installed"
    if IS_ROOT:
        uid = int(isolation["user"].split()[1].rstrip(","))
        assert uid >= 1 << 30 and isolation["user"] == f"uid {uid}, gid {uid}"  # its own
        assert isolation["view"] == "minimal (pivot_root)", isolation


def test_environment_is_scrubbed_and_the_folder_removed(sandbox: Sandbox) -> None:
    code = (
        "import os\nprint(sorted(os.environ))\nprint(os.getcwd())\n"
        "open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())"
    )
    results, report = run(sandbox, code, [("", "")])
    lines = (report.outcomes[0].output or "").split("\n")
    assert set(eval(lines[0])) <= {"PATH", "LANG", "HOME", "TMPDIR", "LC_CTYPE"}
    assert lines[2] == "x"
    assert not os.path.exists(lines[1])


# -- hostile programs ---------------------------------------------------------------------


def test_infinite_loop_is_a_time_limit_and_later_tests_still_run(sandbox: Sandbox) -> None:
    code = "n = int(input())\nwhile n == 1:\n    pass\nprint(n)"
    results, _ = run(sandbox, code, [("1", "1"), ("2", "2")])
    assert verdicts(results) == [Verdict.TIME_LIMIT, Verdict.PASSED]


def test_loop_that_swallows_the_timer_is_killed_by_the_parent(sandbox: Sandbox) -> None:
    code = "while True:\n    try:\n        while True:\n            pass\n"
    code += "    except BaseException:\n        pass"
    results, report = run(sandbox, code, [("", "x")])
    assert verdicts(results) == [Verdict.TIME_LIMIT]


def test_running_out_of_cpu_time_is_a_time_limit() -> None:
    box = Sandbox(SandboxConfig(test_timeout=60.0, cpu_seconds=1))
    try:
        results, report = run(box, "n = int(input())\nwhile n:\n    pass\nprint(n)", [("1", "")])
    finally:
        box.close()
    assert report.isolation["rlimits"]["RLIMIT_CPU"] == 1
    assert verdicts(results) == [Verdict.TIME_LIMIT]
    assert "SIGXCPU" in results[0].message  # the CPU limit, not the parent's watchdog


def test_memory_bomb_is_a_runtime_error(sandbox: Sandbox) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))"
    results, _ = run(sandbox, code, [("", "")])
    assert verdicts(results) == [Verdict.RUNTIME_ERROR]
    assert "MemoryError" in results[0].message


def test_forks_are_refused_then_a_fork_bomb_goes_nowhere(sandbox: Sandbox, isolation: dict) -> None:
    if isolation["seccomp"] != "installed" and "RLIMIT_NPROC" not in isolation["rlimits"]:
        pytest.skip(f"no process limit on this machine: {isolation}")
    bounded = (
        "import os\nmade = 0\nfor _ in range(3):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        print('refused')\n        break\n"
        "    if pid == 0:\n        os._exit(0)\n    made += 1\nprint(made)"
    )
    results, _ = run(sandbox, bounded, [("", "refused\n0")])
    assert verdicts(results) == [Verdict.PASSED]  # checked before the real bomb runs
    results, _ = run(sandbox, "import os\nwhile True:\n    os.fork()", [("", "")])
    assert verdicts(results) == [Verdict.RUNTIME_ERROR]
    assert "BlockingIOError" in results[0].message or "OSError" in results[0].message


def test_threads_still_work(sandbox: Sandbox) -> None:
    code = (
        "import threading\nout = []\nt = threading.Thread(target=lambda: out.append(7))\n"
        "t.start()\nt.join()\nprint(out[0])"
    )
    results, _ = run(sandbox, code, [("", "7")])
    assert verdicts(results) == [Verdict.PASSED]


def test_writing_outside_the_working_folder_fails(
    sandbox: Sandbox, isolation: dict, tmp_path: Path
) -> None:
    if not isolation["view"].startswith("minimal"):
        pytest.skip("no mount namespace here, so world-writable folders stay writable")
    targets = [tmp_path / "escape.txt", ROOT / "escape.txt", Path("/tmp/thoughtmdp-escape.txt")]
    code = "import os\nfor path in " + repr([str(t) for t in [*targets, "../escape.txt"]]) + ":\n"
    code += "    try:\n        open(path, 'w').write('x')\n        print('written')\n"
    code += "    except OSError:\n        print('denied')"
    results, _ = run(sandbox, code, [("", "denied\ndenied\ndenied\ndenied")])
    assert verdicts(results) == [Verdict.PASSED], results
    assert not any(t.exists() for t in targets)


def test_environment_secrets_do_not_leak(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THOUGHTMDP_TEST_SECRET", "hunter2")
    code = (
        "import os\nprint(os.environ.get('THOUGHTMDP_TEST_SECRET'))\n"
        "try:\n    print(open(f'/proc/{os.getppid()}/environ', 'rb').read())\n"
        "except OSError:\n    print('blocked')"
    )
    results, report = run(sandbox, code, [("", "None\nblocked")])
    assert verdicts(results) == [Verdict.PASSED]
    assert "hunter2" not in (report.outcomes[0].output or "")


def test_os_system_and_subprocess_are_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = (
        f"import os, subprocess\nprint(os.system('touch {marker}') != 0)\n"
        "try:\n    subprocess.run(['true'])\n    print('ran')\n"
        "except OSError:\n    print('refused')"
    )
    results, _ = run(sandbox, code, [("", "True\nrefused")])
    assert verdicts(results) == [Verdict.PASSED]
    assert not marker.exists()


def test_sockets_cannot_reach_the_network(sandbox: Sandbox) -> None:
    code = (
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
        "    print('connected')\nexcept OSError:\n    print('refused')"
    )
    results, _ = run(sandbox, code, [("", "refused")])
    assert verdicts(results) == [Verdict.PASSED]


def test_gigantic_output_is_cut_and_fails(sandbox: Sandbox) -> None:
    results, _ = run(sandbox, "while True:\n    print('x' * 1000)", [("", "x")])
    assert verdicts(results) == [Verdict.RUNTIME_ERROR]
    assert results[0].message.startswith("output limit")


def test_sys_exit_midway_keeps_what_was_printed(sandbox: Sandbox) -> None:
    code = "import sys\nprint(input())\nsys.exit(0)\nprint('never')"
    results, _ = run(sandbox, code, [("a", "a"), ("b", "b\nnever")])
    assert verdicts(results) == [Verdict.PASSED, Verdict.WRONG_ANSWER]


def test_hard_exit_fails_one_test_and_a_fresh_child_runs_the_rest(sandbox: Sandbox) -> None:
    code = "import os\nn = int(input())\nif n == 1:\n    os._exit(3)\nprint(n)"
    results, report = run(sandbox, code, [("1", "1"), ("2", "2"), ("3", "3")])
    assert verdicts(results) == [Verdict.RUNTIME_ERROR, Verdict.PASSED, Verdict.PASSED]
    assert "exit code 3" in results[0].message
    assert len(report.pids) == 2


def test_deep_recursion_is_a_runtime_error(sandbox: Sandbox) -> None:
    results, _ = run(sandbox, "def f(n):\n    return f(n + 1)\nprint(f(0))", [("", "")])
    assert verdicts(results) == [Verdict.RUNTIME_ERROR]
    assert "RecursionError" in results[0].message
    through_c = (
        "import sys\nsys.setrecursionlimit(10**7)\nn = int(input())\n"
        "def f(k):\n    return list(map(f, [k + 1]))\nif n == 1:\n    f(0)\nprint(n)"
    )
    results, _ = run(sandbox, through_c, [("1", "1"), ("2", "2")])
    assert results[0].verdict in (Verdict.RUNTIME_ERROR, Verdict.TIME_LIMIT)
    assert results[1].verdict is Verdict.PASSED


def test_killing_the_parent_or_everyone_is_refused(sandbox: Sandbox) -> None:
    code = (
        "import os, signal\nfor pid in (os.getppid(), -1, 0):\n    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n        print('sent')\n"
        "    except OSError:\n        print('refused')"
    )
    results, _ = run(sandbox, code, [("", "refused\nrefused\nrefused")])
    assert verdicts(results) == [Verdict.PASSED]


def test_closing_stdout_and_every_descriptor(sandbox: Sandbox) -> None:
    closes_stdout = "import sys, os\nsys.stdout.close()\nos.close(1)\nprint('still here')"
    results, _ = run(sandbox, closes_stdout, [("", "still here")])
    assert verdicts(results) == [Verdict.PASSED]
    closes_all = "import os\nn = int(input())\nif n == 1:\n    os.closerange(0, 4096)\nprint(n)"
    results, report = run(sandbox, closes_all, [("1", "1"), ("2", "2")])
    assert verdicts(results) == [Verdict.RUNTIME_ERROR, Verdict.PASSED]


def test_threads_left_running_end_the_child(sandbox: Sandbox) -> None:
    code = (
        "import threading, time\nn = int(input())\nif n == 1:\n"
        "    threading.Thread(target=lambda: time.sleep(60), daemon=DAEMON).start()\nprint(n)"
    )
    tests = [("1", "1"), ("2", "2")]
    results, report = run(sandbox, code.replace("DAEMON", "True"), tests)
    assert verdicts(results) == [Verdict.PASSED, Verdict.PASSED]
    assert len(report.pids) == 2  # the leftover thread cost the first child its life
    # A thread the program waits for keeps it running: a real judge would wait too.
    results, report = run(sandbox, code.replace("DAEMON", "False"), tests)
    assert verdicts(results) == [Verdict.TIME_LIMIT, Verdict.PASSED]


# -- plumbing -----------------------------------------------------------------------------


def test_stdin_idioms_all_see_the_test_input(sandbox: Sandbox) -> None:
    idioms = [
        "print(input())",
        "import sys\nprint(sys.stdin.readline().strip())",
        "import sys\nprint(sys.stdin.buffer.read().decode().strip())",
        "print(open(0).read().strip())",
        "from sys import stdin\nprint(stdin.read().strip())",
    ]
    for code in idioms:
        results, _ = run(sandbox, code, [("first\n", "first"), ("second\n", "second")])
        assert verdicts(results) == [Verdict.PASSED, Verdict.PASSED], code


def test_arun_does_not_block_the_event_loop(sandbox: Sandbox) -> None:
    job = Job("import time\ntime.sleep(1)", "script", ("",))

    async def main() -> tuple[int, RunReport]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        report = await sandbox.arun(job)
        ticker.cancel()
        return ticks, report

    ticks, report = asyncio.run(main())
    assert report.outcomes[0].status == "ok"
    assert ticks >= 10


def test_seccomp_filter_jumps_stay_inside_the_program() -> None:
    for machine in SYSCALLS:
        program = build_filter(machine, 1234)
        size = len(program) // 8
        assert size < 256
        for index in range(size):
            code, jt, jf, k = struct.unpack("HBBI", program[index * 8 : index * 8 + 8])
            if code & 0x07 == 0x05:  # a jump: both targets are later instructions
                assert index + 1 + max(jt, jf) < size
        assert struct.unpack("HBBI", program[-8:]) == (0x06, 0, 0, 0x7FFF0000)  # allow


def test_a_missing_interpreter_is_a_sandbox_error() -> None:
    box = Sandbox(SandboxConfig(python="/nonexistent/python"))
    with pytest.raises(SandboxError, match="could not start the sandbox child"):
        box.run(Job("pass", "script", ("",)))


# -- lcb_runner's way of running programs -------------------------------------------------


def test_module_level_names_become_locals_as_under_lcb_runner(sandbox: Sandbox) -> None:
    code = "total = 1\ndef bump():\n    global total\n    total += 1\nbump()\nprint(total)"
    tests = [CodeTest("", "2")]
    wrapped = judge(sandbox, code, tests)
    assert [r.verdict for r in wrapped.results] == [Verdict.RUNTIME_ERROR]
    assert "NameError" in wrapped.results[0].message
    plain = judge(sandbox, code, tests, lcb_compat=False)
    assert [r.verdict for r in plain.results] == [Verdict.PASSED]


def test_call_based_programs_share_one_solution_instance(sandbox: Sandbox) -> None:
    code = (
        "class Solution:\n    calls = 0\n    def count(self, x):\n"
        "        self.calls += 1\n        return self.calls\n"
    )
    result = judge(sandbox, code, [CodeTest("0", "1"), CodeTest("0", "2")], "count")
    assert [r.verdict for r in result.results] == [Verdict.PASSED, Verdict.PASSED]
    exits = "import sys\nclass Solution:\n    def f(self, x):\n        sys.exit(0)\n"
    result = judge(sandbox, exits, [CodeTest("1", "null")], "f")
    assert [r.verdict for r in result.results] == [Verdict.RUNTIME_ERROR]


@pytest.mark.parametrize(
    ("code", "expected", "message"),
    [
        ("class Solution:\n    def f(self, x)\n        return x\n", Verdict.COMPILE_ERROR,
         "SyntaxError"),
        ("class Solution:\n    def g(self, x):\n        return x\n", Verdict.COMPILE_ERROR,
         "AttributeError"),
        ("while True:\n    pass\n", Verdict.TIME_LIMIT, "loading timed out"),
    ],
)  # fmt: skip
def test_programs_that_do_not_load(
    sandbox: Sandbox, code: str, expected: Verdict, message: str
) -> None:
    tests = [CodeTest("1", "1"), CodeTest("2", "2")]
    every = judge(sandbox, code, tests, "f")
    assert [r.verdict for r in every.results] == [expected, expected]
    assert message in every.results[0].message
    first = judge(sandbox, code, tests, "f", stop_on_failure=True)
    assert len(first.results) == 1 and first.total == 2 and not first.all_passed


def test_stop_on_failure_ends_at_the_first_failing_test(sandbox: Sandbox) -> None:
    tests = [CodeTest(str(i), str(i if i != 2 else -1)) for i in range(5)]
    result = judge(sandbox, "print(input())", tests, stop_on_failure=True)
    assert [r.verdict for r in result.results] == [Verdict.PASSED] * 2 + [Verdict.WRONG_ANSWER]
    assert result.total == 5 and result.passed == 2


def test_a_hang_in_c_while_loading_fails_every_test_once(sandbox: Sandbox) -> None:
    # sum() over a range loops in C without checking signals: deaf to the child's own timer.
    code = "sum(range(10**12))\nclass Solution:\n    def f(self, x):\n"
    code += "        return x\n"
    result = judge(sandbox, code, [CodeTest("1", "1"), CodeTest("2", "2")], "f")
    assert [r.verdict for r in result.results] == [Verdict.TIME_LIMIT, Verdict.TIME_LIMIT]
    assert result.results[0].message.endswith("while loading the program")
