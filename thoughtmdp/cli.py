"""The ``thoughtmdp`` command line: parses arguments, then imports what the command needs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``thoughtmdp`` sub-command."""
    parser = argparse.ArgumentParser(
        prog="thoughtmdp",
        description="RL post-training of language models with resets to earlier reasoning steps.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("tasks", help="list the registered tasks, one line each")
    demo = commands.add_parser(
        "demo",
        help="roll one reset episode through the ArithChain env with a scripted noisy solver",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of problems and solver")
    demo.add_argument("--num-steps", type=int, default=4, help="operations per ArithChain problem")
    demo.add_argument(
        "--error-rate", type=float, default=0.25, help="solver's chance of a slip per step"
    )
    demo.add_argument(
        "--reset-policy",
        choices=["oracle", "uniform"],
        default="oracle",
        help="how the reset step is picked from the failed seed chain",
    )
    demo.add_argument(
        "--suffixes", type=int, default=4, help="suffix rollouts from the reset state (M)"
    )
    _add_eval_code(commands)
    _add_eval(commands)
    _add_learner(commands)
    _add_actor(commands)
    _add_training(commands)
    return parser


def _add_eval_code(commands: Any) -> None:
    """``eval-code``: grade LiveCodeBench code samples in the sandbox."""
    parser = commands.add_parser(
        "eval-code",
        help="grade LiveCodeBench code samples in the sandbox (pass@1 table, lcb_runner JSON)",
    )
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
        "-k", type=int, nargs="+", default=[1, 5, 10], help="the k of the pass@k means"
    )


def _add_eval(commands: Any) -> None:
    """``eval`` and ``audit-localization``: benchmark suites and the localisation audit."""
    from thoughtmdp.commands import audit, eval

    eval.add_parser(commands)
    audit.add_parser(commands)


def _add_learner(commands: Any) -> None:
    """``learner``: train the LoRA policy on streamed episodes (parsed without torch)."""
    from thoughtmdp.commands.learner import add_parser

    add_parser(commands)


def _add_actor(commands: Any) -> None:
    """``actor``: sample episodes and stream them to the learner (parsed without torch)."""
    from thoughtmdp.commands.actor import add_parser

    add_parser(commands)


def _add_training(commands: Any) -> None:
    """``train``, ``config``, ``warmstart`` and ``plot`` (parsed without torch)."""
    from thoughtmdp.commands.plot import add_parser as add_plot
    from thoughtmdp.commands.train import add_parsers
    from thoughtmdp.commands.warmstart import add_parser as add_warmstart

    add_parsers(commands)
    add_warmstart(commands)
    add_plot(commands)


RUNNERS = {
    "tasks": "thoughtmdp.mdp.task:run_tasks_command",
    "demo": "thoughtmdp.commands.demo:run_demo_command",
    "learner": "thoughtmdp.commands.learner:run",
    "actor": "thoughtmdp.commands.actor:run",
    "eval": "thoughtmdp.commands.eval:run",
    "audit-localization": "thoughtmdp.commands.audit:run",
    "eval-code": "thoughtmdp.envs.livecodebench.evaluate:run",
    "train": "thoughtmdp.commands.train:run_train",
    "config": "thoughtmdp.commands.train:run_config",
    "warmstart": "thoughtmdp.commands.warmstart:run",
    "plot": "thoughtmdp.commands.plot:run",
}
"""Each command's ``run(args) -> exit code``, imported only when that command runs."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    from thoughtmdp.registry import load_object

    args = build_parser().parse_args(argv)
    code: int = load_object(RUNNERS[args.command])(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
