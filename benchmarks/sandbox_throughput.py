"""Sandbox throughput: test executions per second for trivial programs.

Each program is a one-line echo (``print(input())``) judged on many tests; all tests of a
program run in one confined child, ``max_concurrency`` programs at a time. Reported:

- executions/s with many tests per program (the figure the task's reward relies on);
- programs/s with one test each (the cost of starting and confining a child).

Usage: ``python benchmarks/sandbox_throughput.py --quick`` (about ten seconds) or without
``--quick`` for more programs. Writes ``benchmarks/results/sandbox_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

from report_files import RESULTS, write_report

from thoughtmdp.envs.livecodebench.grading import CodeTest, Verdict
from thoughtmdp.envs.livecodebench.judge import judge
from thoughtmdp.envs.sandbox.sandbox import Sandbox, SandboxConfig

TARGET = 50.0
"""Test executions per second the sandbox should sustain on a 2-core machine."""


def measure(sandbox: Sandbox, programs: int, tests: int, code: str) -> dict[str, Any]:
    cases = [CodeTest(f"{i}\n", f"{i}\n") for i in range(tests)]
    start = time.perf_counter()
    futures = [sandbox.executor.submit(judge, sandbox, code, cases) for _ in range(programs)]
    results = [f.result() for f in futures]
    seconds = time.perf_counter() - start
    passed = sum(r.passed for r in results)
    assert all(v.verdict is Verdict.PASSED for r in results for v in r.results), "a test failed"
    return {
        "programs": programs,
        "tests_per_program": tests,
        "executions": passed,
        "seconds": round(seconds, 3),
        "executions_per_s": round(passed / seconds, 1),
        "programs_per_s": round(programs / seconds, 2),
    }


def machine(isolation: dict[str, Any]) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "thoughtmdp": _version(),
        "root": os.geteuid() == 0,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "isolation": isolation,
    }


def _version() -> str:
    from importlib.metadata import version

    return version("thoughtmdp")


def markdown(report: dict[str, Any]) -> str:
    rows = [
        "| case | programs | tests/program | executions | seconds | executions/s | programs/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["cases"].items():
        rows.append(
            f"| {name} | {r['programs']} | {r['tests_per_program']} | {r['executions']} | "
            f"{r['seconds']} | {r['executions_per_s']} | {r['programs_per_s']} |"
        )
    m = report["machine"]
    iso = m["isolation"]
    verdict = "met" if report["target_met"] else "MISSED"
    return "\n".join(
        [
            "# Sandbox throughput",
            "",
            f"Command: `{report['command']}`",
            "",
            f"Machine: {m['platform']}, {m['machine']}, {m['cpus']} CPUs; Python {m['python']}; "
            f"thoughtmdp {m['thoughtmdp']}; run as {'root' if m['root'] else 'non-root'}; "
            f"load average {m['load_average']} when it started.",
            "",
            f"Isolation of every child: user {iso.get('user')}; namespaces "
            f"{iso.get('namespaces')}; file system {iso.get('view')}; seccomp "
            f"{iso.get('seccomp')}; rlimits {', '.join(iso.get('rlimits', {}))}.",
            "",
            *rows,
            "",
            f"Target: at least {TARGET:g} test executions/s with many tests per program: "
            f"{verdict} ({report['cases']['many tests']['executions_per_s']}/s).",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer programs (seconds)")
    parser.add_argument("--max-concurrency", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    programs, single = (20, 40) if args.quick else (100, 200)
    sandbox = Sandbox(SandboxConfig(test_timeout=6.0, max_concurrency=args.max_concurrency))
    try:
        isolation = sandbox.probe()
        measure(sandbox, 2, 2, "print(input())")  # warm the file-system caches
        cases = {
            "many tests": measure(sandbox, programs, 100, "print(input())"),
            "one test": measure(sandbox, single, 1, "print(input())"),
        }
    finally:
        sandbox.close()
    command = "python benchmarks/sandbox_throughput.py" + (" --quick" if args.quick else "")
    report = {
        "command": command,
        "max_concurrency": args.max_concurrency,
        "machine": machine(isolation),
        "cases": cases,
        "target_executions_per_s": TARGET,
        "target_met": cases["many tests"]["executions_per_s"] >= TARGET,
    }
    write_report(RESULTS, "sandbox_throughput", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
