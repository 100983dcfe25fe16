"""The ``thoughtmdp eval`` command: evaluate a model and its adapters on a suite.

Arguments, the suite, its data files and the adapters are checked before any model loads;
nothing here imports torch or vLLM at module level. ``--run RUN_DIR`` evaluates a run's
adapter with the task, prompts and rollout settings it was trained with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from thoughtmdp.commands import Command
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.backends import BACKENDS
from thoughtmdp.evaluation.plan import EvalPlan, fingerprint, plan_from_args
from thoughtmdp.evaluation.suite import DATA_DIR_ENV
from thoughtmdp.evaluation.trained import TrainedPolicy
from thoughtmdp.settings.checks import check_model_path
from thoughtmdp.settings.evaluation import OPTIONS, EvalSettings, add_eval_arguments


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``eval``."""
    add_policy_arguments(parser)
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]PATH[,PATH...]",
        help=(
            "a report row: its adapter folders, one per training seed (the row's SD is taken "
            "over them); repeatable"
        ),
    )
    parser.add_argument(
        "--base", action="store_true", help="add a 'base' row (implied without --adapter)"
    )
    parser.add_argument("--suite", help="'paper' (default) or a suite YAML file")
    parser.add_argument(
        "--tasks", help="comma-separated task names: entries of the suite or registered tasks"
    )
    parser.add_argument("--data-dir", help=f"folder of the suite's data files (or ${DATA_DIR_ENV})")
    parser.add_argument("--n", type=int, help="items sampled per task (default: the suite's)")
    parser.add_argument(
        "--sample-seed",
        type=int,
        help=(
            "seed of the one item sample per task, shared by the base model and every adapter "
            "(default: the suite's, 0 for 'paper'); not a training seed"
        ),
    )
    parser.add_argument("--seeds", help=argparse.SUPPRESS)  # removed; explains what replaced it
    parser.add_argument("--out", default="eval_results", help="output folder (resumed if present)")
    parser.add_argument("-k", default="1", help="comma-separated k of pass@k (each <= --samples)")
    add_eval_arguments(parser, EvalSettings())
    parser.set_defaults(**dict.fromkeys(OPTIONS))  # left out: the run's value, else the default
    add_backend_arguments(parser)


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and how it was trained, shared by ``eval`` and ``audit-localization``."""
    parser.add_argument(
        "--model",
        help="base model folder (or vLLM model name); default: the one --run or --config names",
    )
    parser.add_argument(
        "--run",
        metavar="RUN_DIR",
        help=(
            "a thoughtmdp train run folder: its adapter, evaluated with the model, task "
            "options (prompts included) and rollout settings of its config.yaml"
        ),
    )
    parser.add_argument(
        "--version",
        type=int,
        help="adapter version of --run (default: the latest; 0: the base model)",
    )
    parser.add_argument(
        "--config",
        metavar="CONFIG",
        help=(
            "the train config (a run's config.yaml) or actor config the model was trained "
            "with; its task options and rollout settings are used, as with --run"
        ),
    )


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The backend choice, shared by ``eval`` and ``audit-localization``."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="auto: vLLM when installed (default: auto; with --run, the run's heldout.backend)",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the transformers backend")


def policy_backend(
    args: argparse.Namespace,
    model: str,
    policy: TrainedPolicy | None,
    adapters: list[str],
    settings: EvalSettings,
) -> tuple[Any, str]:
    """The backend of ``--backend``; for a trained policy, built as its held-out evaluation's.

    Without ``--backend`` a policy gets the backend its run evaluated with (else ``auto``),
    its actors' engine options and a batch of ``settings.concurrency`` requests.

    Args:
        args: The command line.
        model: The base model.
        policy: What the model was trained with, if known.
        adapters: The adapter folders that will be loaded.
        settings: The rollout settings.
    """
    from thoughtmdp.evaluation.backends import make_backend

    if policy is None:
        return make_backend(model, args.backend or "auto", adapters=adapters, device=args.device)
    return make_backend(
        model,
        args.backend or policy.backend,
        adapters=adapters,
        device=args.device,
        max_batch_size=settings.concurrency,
        engine_options=policy.engine_options,
    )


def print_prompt_warnings(
    tasks: dict[str, Any], model: str, policy: TrainedPolicy | None, names: tuple[str, ...]
) -> None:
    """Warn about each task that prompts otherwise than the model was trained to read."""
    from thoughtmdp.evaluation.trained import prompt_warnings, recorded_prompts

    for line in prompt_warnings(tasks, recorded_prompts(model, policy), names):
        print(line, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp eval``; returns the exit code (2 for a bad command line)."""
    from thoughtmdp.evaluation.records import RecordStore

    tasks: dict[str, Any] = {}
    try:
        plan = plan_from_args(args)
        tasks = {e.name: e.build() for e in plan.suite.tasks}
        check_model_path(plan.model, "--model")
        store = RecordStore(plan.out, fingerprint(plan))
    except (ThoughtMDPError, FileNotFoundError, ValueError) as exc:
        _close(tasks.values())
        print(f"thoughtmdp eval: error: {exc}", file=sys.stderr)
        return 2
    print_prompt_warnings(tasks, plan.model, plan.policy, ("prompt_template",))
    adapters = [a for m in plan.methods for a in m.adapters if a is not None]
    backend, kind = policy_backend(args, plan.model, plan.policy, adapters, plan.settings)
    try:
        return _evaluate(plan, tasks, store, backend, kind)
    finally:
        _close(tasks.values())
        backend.close()


def _evaluate(plan: EvalPlan, tasks: dict[str, Any], store: Any, backend: Any, kind: str) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from thoughtmdp.evaluation.benchmark import evaluate
    from thoughtmdp.evaluation.report import build_report, to_rich, write_report

    console = Console()
    console.print(f"backend: {kind} · model: {plan.model} · output: {plan.out}")
    with Progress(console=console, transient=not console.is_terminal) as progress:
        result = asyncio.run(
            evaluate(backend, plan.suite, tasks, plan.methods, plan.settings, store, progress)
        )
    settings = {
        **fingerprint(plan),
        "backend": kind,
        "samples": plan.settings.samples,
        "n": plan.suite.n,
        "sample_seed": plan.suite.sample_seed,
        "sd": "sample SD (ddof=1) over a row's adapters (training seeds); none for one policy",
        "methods": {m.name: list(m.adapters) for m in plan.methods},
    }
    if plan.policy is not None:
        settings["trained_with"] = str(plan.policy.source)
    report = build_report(result, plan.ks, plan.settings.samples, settings)
    for metric in report.metrics:
        console.print(to_rich(report, metric))
    for note in report.notes:
        console.print(note, markup=False, highlight=False)
    paths = write_report(report, plan.out)
    console.print(
        f"graded {result.graded} rollouts, resumed {result.resumed}; wrote "
        + ", ".join(os.fspath(p) for p in paths)
    )
    return 0


def _close(tasks: Any) -> None:
    for task in tasks:
        task.close()


COMMAND = Command(
    "eval",
    help="evaluate a model and its LoRA adapters on benchmark tasks (Table-3-style report)",
    run=run,
    arguments=arguments,
    description=(
        "Thought-level rollouts (the training prompt) on one fixed sample of n items per task "
        "(drawn with --sample-seed, the same for every row; a suite's exclude_training keeps "
        "training problems out), pass rate per task, mean ± SD over a row's adapters (one per "
        "training seed; the base model has no SD). Results go to --out: results.md/.csv/.json "
        "and records.jsonl (per-item records; a rerun resumes). --run RUN_DIR evaluates a "
        "run's latest adapter (--version N for another) on the run's task, prompts, chat "
        "template, caps and held-out problem count, as its held-out evaluation did; rollout "
        "options left out take the run's values, and a task whose prompt differs from the "
        "one the model was trained with is named in a warning."
    ),
)
