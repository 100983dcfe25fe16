"""The ``thoughtmdp audit-localization`` command: self-localisation vs a task's step oracle.

The task (a suite entry or a registered task) must have a step oracle; this is checked, with
the adapter and the arguments, before the model loads.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from thoughtmdp.backend import SamplingParams
from thoughtmdp.commands import Command
from thoughtmdp.commands.eval import (
    add_rollout_arguments,
    check_adapter,
    make_backend,
    select_suite,
)
from thoughtmdp.errors import StepOracleUnavailable, ThoughtMDPError
from thoughtmdp.evaluation.suite import sample_problems


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``audit-localization``."""
    parser.add_argument("--model", required=True, help="base model folder (or vLLM model name)")
    parser.add_argument("--adapter", help="LoRA adapter folder of the policy to audit")
    parser.add_argument("--task", required=True, help="a task with a step oracle, e.g. arith_chain")
    parser.add_argument("--suite", help="suite whose entry --task names (default: paper)")
    parser.add_argument("--data-dir", help="folder of the suite's data files")
    parser.add_argument("--n", type=int, default=100, help="problems sampled")
    parser.add_argument("--seed", type=int, default=0, help="seed of the problem sample")
    parser.add_argument("--samples", type=int, default=1, help="chains per problem")
    parser.add_argument("--suffixes", type=int, default=4, help="suffixes per reset (M; 0: none)")
    parser.add_argument("--temperature", type=float, default=0.7, help="chain temperature")
    parser.add_argument("--top-p", type=float, default=0.95, help="chain nucleus mass")
    parser.add_argument("--localizer-max-tokens", type=int, default=512, help="localiser answer")
    parser.add_argument("--out", default="audit_results", help="output folder")
    add_rollout_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp audit-localization``; returns the exit code (2 for a bad command line)."""
    try:
        entry = select_suite(args.suite, args.task, args.data_dir).tasks[0]
        adapters = [check_adapter(args.adapter)] if args.adapter else []
        if args.n < 1 or args.samples < 1 or args.suffixes < 0:
            raise ThoughtMDPError("--n and --samples must be at least 1, --suffixes at least 0")
        task = entry.build()
        if not task.has_step_oracle:
            task.close()
            raise StepOracleUnavailable(
                f"task {args.task!r} has no step oracle (first_error_step), so there is nothing "
                "to compare self-localisation with; audit a task such as arith_chain"
            )
    except (ThoughtMDPError, FileNotFoundError, ValueError) as exc:
        print(f"thoughtmdp audit-localization: error: {exc}", file=sys.stderr)
        return 2
    backend, kind = make_backend(args.model, args.backend, args.device, adapters)
    try:
        return _audit(args, task, backend, kind, adapters)
    finally:
        task.close()
        backend.close()


def _audit(
    args: argparse.Namespace, task: Any, backend: Any, kind: str, adapters: list[str]
) -> int:
    from rich.console import Console
    from rich.markdown import Markdown

    from thoughtmdp.evaluation.audit import AuditSettings, audit_localization
    from thoughtmdp.evaluation.audit_report import audit_markdown, audit_summary, write_audit
    from thoughtmdp.evaluation.engine import evaluation_split, use_adapter
    from thoughtmdp.mdp.env import ThoughtMDPEnv

    console = Console()
    console.print(f"backend: {kind} · model: {args.model} · task: {args.task}")
    settings = AuditSettings(
        samples=args.samples,
        suffixes=args.suffixes,
        sampling=SamplingParams(
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens
        ),
        localizer_max_tokens=args.localizer_max_tokens,
        seed=args.seed,
        concurrency=args.concurrency,
    )
    problems = sample_problems(task.problems(evaluation_split(task)), args.n, args.seed)

    def make_env() -> ThoughtMDPEnv:
        return ThoughtMDPEnv(
            task,
            split=evaluation_split(task),
            tokenizer=backend.tokenizer,
            max_thoughts=args.max_thoughts,
            max_total_tokens=args.max_total_tokens,
        )

    async def main() -> Any:
        await use_adapter(backend, adapters[0] if adapters else None)
        return await audit_localization(task, backend, make_env, problems, settings)

    result = asyncio.run(main())
    summary = audit_summary(result)
    console.print(Markdown(audit_markdown(summary)))
    paths = write_audit(result, summary, args.out)
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0


COMMAND = Command(
    "audit-localization",
    help="compare the policy's self-localised error steps with a task's step oracle",
    run=run,
    arguments=arguments,
    description=(
        "Samples chains, asks the policy for the first wrong step of each failed one, "
        "compares it with the task's oracle (deviation histogram, exact-match and clean "
        "prefix rates) and resamples M suffixes from the self-localised reset state "
        "(correction rates). Writes audit.json, audit.md and audit_records.jsonl."
    ),
)
