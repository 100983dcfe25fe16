"""The ``thoughtmdp audit-localization`` command: self-localisation vs a task's step oracle.

The task (a suite entry or a registered task) must have a step oracle; this is checked, with
the adapter and the arguments, before the model loads.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from thoughtmdp.commands import Command
from thoughtmdp.commands.eval import add_backend_arguments
from thoughtmdp.errors import StepOracleUnavailable, ThoughtMDPError
from thoughtmdp.evaluation.plan import check_adapter, select_suite
from thoughtmdp.evaluation.suite import sample_problems
from thoughtmdp.settings.evaluation import EvalSettings, add_eval_arguments, eval_settings_from_args

CHAINS = EvalSettings(temperature=0.7, top_p=0.95)
"""Chains are sampled as training samples them (the failures are the policy's own)."""


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``audit-localization``."""
    parser.add_argument("--model", required=True, help="base model folder (or vLLM model name)")
    parser.add_argument("--adapter", help="LoRA adapter folder of the policy to audit")
    parser.add_argument("--task", required=True, help="a task with a step oracle, e.g. arith_chain")
    parser.add_argument("--suite", help="suite whose entry --task names (default: paper)")
    parser.add_argument("--data-dir", help="folder of the suite's data files")
    parser.add_argument("--n", type=int, default=100, help="problems sampled")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the problem sample and of the chains"
    )
    parser.add_argument("--suffixes", type=int, default=4, help="suffixes per reset (M; 0: none)")
    parser.add_argument("--localizer-max-tokens", type=int, default=512, help="localiser answer")
    parser.add_argument("--out", default="audit_results", help="output folder")
    add_eval_arguments(parser, CHAINS)
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp audit-localization``; returns the exit code (2 for a bad command line)."""
    try:
        entry = select_suite(args.suite, args.task, args.data_dir).tasks[0]
        adapters = [check_adapter(args.adapter)] if args.adapter else []
        if args.n < 1 or args.suffixes < 0:
            raise ThoughtMDPError("--n must be at least 1, --suffixes at least 0")
        settings = eval_settings_from_args(args, CHAINS, sampling_seed=args.seed)
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
    from thoughtmdp.evaluation.backends import make_backend

    backend, kind = make_backend(args.model, args.backend, adapters=adapters, device=args.device)
    try:
        return _audit(args, settings, task, backend, kind, adapters)
    finally:
        task.close()
        backend.close()


def _audit(
    args: argparse.Namespace,
    settings: EvalSettings,
    task: Any,
    backend: Any,
    kind: str,
    adapters: list[str],
) -> int:
    from rich.console import Console
    from rich.markdown import Markdown

    from thoughtmdp.evaluation.audit import AuditSettings, audit_localization
    from thoughtmdp.evaluation.audit_report import audit_markdown, audit_summary, write_audit
    from thoughtmdp.evaluation.engine import EvalEngine, use_adapter

    console = Console()
    console.print(f"backend: {kind} · model: {args.model} · task: {args.task}")
    audit = AuditSettings(suffixes=args.suffixes, localizer_max_tokens=args.localizer_max_tokens)

    async def main() -> Any:
        await use_adapter(backend, adapters[0] if adapters else None)
        engine = EvalEngine(backend, task, settings)
        problems = sample_problems(task.problems(engine.split), args.n, args.seed)
        return await audit_localization(engine, problems, audit)

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
