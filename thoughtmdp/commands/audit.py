"""The ``thoughtmdp audit-localization`` command: self-localisation vs a task's step oracle.

The task (a suite entry or a registered task) must have a step oracle; this is checked, with
the adapter and the arguments, before the model loads. ``--run RUN_DIR`` audits a run's
adapter on its task, with the prompts and the sampling it was trained with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from thoughtmdp.commands import Command
from thoughtmdp.commands.eval import (
    add_backend_arguments,
    add_policy_arguments,
    policy_backend,
    print_prompt_warnings,
)
from thoughtmdp.errors import StepOracleUnavailable, ThoughtMDPError
from thoughtmdp.evaluation.plan import check_adapter, select_suite
from thoughtmdp.evaluation.suite import SuiteEntry, sample_problems
from thoughtmdp.evaluation.trained import (
    PROMPT_FIELDS,
    TrainedPolicy,
    policy_from_args,
    settings_from_args,
)
from thoughtmdp.settings.checks import check_model_path
from thoughtmdp.settings.evaluation import OPTIONS, EvalSettings, add_eval_arguments

CHAINS = EvalSettings(temperature=0.7, top_p=0.95)
"""Chains are sampled as training samples them (the failures are the policy's own); with
``--run`` at the run's temperature, top_p and caps."""
LOCALIZER_MAX_TOKENS = 512


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``audit-localization``."""
    add_policy_arguments(parser)
    parser.add_argument("--adapter", help="LoRA adapter folder of the policy to audit")
    parser.add_argument(
        "--task", help="a task with a step oracle, e.g. arith_chain (default: the run's task)"
    )
    parser.add_argument("--suite", help="suite whose entry --task names (default: paper)")
    parser.add_argument("--data-dir", help="folder of the suite's data files")
    parser.add_argument("--n", type=int, default=100, help="problems sampled")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the problem sample and of the chains"
    )
    parser.add_argument("--suffixes", type=int, default=4, help="suffixes per reset (M; 0: none)")
    parser.add_argument(
        "--localizer-max-tokens",
        type=int,
        help=f"longest localiser answer (default: the run's, else {LOCALIZER_MAX_TOKENS})",
    )
    parser.add_argument("--out", default="audit_results", help="output folder")
    add_eval_arguments(parser, CHAINS)
    parser.set_defaults(**dict.fromkeys(OPTIONS))  # left out: the run's value, else the default
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp audit-localization``; returns the exit code (2 for a bad command line)."""
    try:
        policy = policy_from_args(args)
        entry = audited_entry(args, policy)
        adapter = args.adapter or (policy.adapter if policy is not None else None)
        adapters = [check_adapter(adapter)] if adapter else []
        if args.n < 1 or args.suffixes < 0:
            raise ThoughtMDPError("--n must be at least 1, --suffixes at least 0")
        chains = CHAINS if policy is None else policy.sampled
        settings = settings_from_args(args, chains, sampling_seed=args.seed)
        task = entry.build()
        if not task.has_step_oracle:
            task.close()
            raise StepOracleUnavailable(
                f"task {entry.name!r} has no step oracle (first_error_step), so there is nothing "
                "to compare self-localisation with; audit a task such as arith_chain"
            )
    except (ThoughtMDPError, FileNotFoundError, ValueError) as exc:
        print(f"thoughtmdp audit-localization: error: {exc}", file=sys.stderr)
        return 2
    model = args.model or (policy.model if policy is not None else "")
    try:
        if model:
            check_model_path(model, "--model")
    except ThoughtMDPError as exc:
        print(f"thoughtmdp audit-localization: error: {exc}", file=sys.stderr)
        return 2
    print_prompt_warnings({entry.name: task}, model, policy, PROMPT_FIELDS)
    backend, kind = policy_backend(args, model, policy, adapters, settings)
    localizer = args.localizer_max_tokens
    if localizer is None and policy is not None:
        localizer = policy.localizer_max_tokens
    audit = Audit(model, entry.name, args, localizer or LOCALIZER_MAX_TOKENS)
    try:
        return _audit(audit, settings, task, backend, kind, adapters)
    finally:
        task.close()
        backend.close()


def audited_entry(args: argparse.Namespace, policy: TrainedPolicy | None) -> SuiteEntry:
    """The task audited: ``--task`` (a suite entry or a registered task), else the run's.

    The run's task keeps the options it was trained with.

    Raises:
        ThoughtMDPError: Without ``--task`` or a run, or for an unknown task.
    """
    if policy is not None and args.task in (None, policy.task):
        return policy.entry
    if args.task is None:
        raise ThoughtMDPError("give --task (or --run RUN_DIR to audit a run on its task)")
    return select_suite(args.suite, args.task, args.data_dir).tasks[0]


@dataclass(frozen=True)
class Audit:
    """What one audit looks at: the model, the task's name, the command line, the localiser."""

    model: str
    task: str
    args: argparse.Namespace
    localizer_max_tokens: int


def _audit(
    audit: Audit,
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
    args = audit.args
    console.print(f"backend: {kind} · model: {audit.model} · task: {audit.task}")
    chosen = AuditSettings(suffixes=args.suffixes, localizer_max_tokens=audit.localizer_max_tokens)

    async def main() -> Any:
        await use_adapter(backend, adapters[0] if adapters else None)
        engine = EvalEngine(backend, task, settings)
        problems = sample_problems(task.problems(engine.split), args.n, args.seed)
        return await audit_localization(engine, problems, chosen)

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
        "(correction rates). Writes audit.json, audit.md and audit_records.jsonl. --run "
        "RUN_DIR audits a run's latest adapter (--version N for another) on its task, with "
        "the rollout and localiser prompts, temperature, top_p and caps it was trained with."
    ),
)
