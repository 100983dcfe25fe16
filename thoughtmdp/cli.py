"""The ``thoughtmdp`` command line: parses arguments, then imports what the command needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "tasks":
        from thoughtmdp.task import describe_tasks

        for line in describe_tasks():
            print(line)
        return 0
    from thoughtmdp.demo import run_demo

    return run_demo(
        seed=args.seed,
        num_steps=args.num_steps,
        error_rate=args.error_rate,
        reset_policy=args.reset_policy,
        suffixes=args.suffixes,
    )


if __name__ == "__main__":
    sys.exit(main())
