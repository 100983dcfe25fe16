"""``thoughtmdp eval-code``: grade LiveCodeBench code samples in the sandbox."""

from __future__ import annotations

import argparse
import os

from thoughtmdp.commands import Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """The problem and sample files, the tests to run and the sandbox's limits."""
    parser.add_argument(
        "--problems", required=True, help="LiveCodeBench code_generation_lite rows (.jsonl)"
    )
    parser.add_argument(
        "--samples", required=True, help='rows {"question_id": ..., "code_list": [...]}'
    )
    parser.add_argument("--out", help="write lcb_runner's evaluation layout (JSON) to this file")
    parser.add_argument(
        "--split", choices=["all", "train", "heldout"], default="all", help="which tests to run"
    )
    parser.add_argument(
        "--heldout-fraction", type=float, default=0.5, help="share of private tests held out"
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the test split")
    parser.add_argument("--timeout", type=float, default=6.0, help="seconds per test")
    parser.add_argument(
        "--max-concurrency", type=int, default=os.cpu_count() or 1, help="programs run at once"
    )
    parser.add_argument(
        "--all-tests",
        action="store_true",
        help="run every test instead of stopping at a program's first failure",
    )
    parser.add_argument(
        "--isolation",
        choices=["strict", "weak"],
        default="strict",
        help="strict: refuse to run programs where the sandbox cannot build its namespaces and "
        "file-system view; weak: run them with whatever confinement the machine allows",
    )
    parser.add_argument(
        "-k", type=int, nargs="+", default=[1, 5, 10], help="the k of the pass@k means"
    )


def run(args: argparse.Namespace) -> int:
    """Grade the samples (:mod:`thoughtmdp.envs.livecodebench.evaluate`); 1 on bad input."""
    from thoughtmdp.envs.livecodebench.evaluate import grade_files

    code: int = grade_files(args)
    return code


COMMAND = Command(
    "eval-code",
    help="grade LiveCodeBench code samples in the sandbox (pass@1 table, lcb_runner JSON)",
    run=run,
    arguments=arguments,
)
