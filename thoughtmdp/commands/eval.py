"""The ``thoughtmdp eval`` command: evaluate a model and its adapters on a suite.

Arguments, the suite, its data files and the adapters are checked before any model loads;
nothing here imports torch or vLLM at module level.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thoughtmdp.commands import Command
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.backends import BACKENDS
from thoughtmdp.evaluation.benchmark import Method
from thoughtmdp.evaluation.suite import (
    DATA_DIR_ENV,
    Suite,
    load_suite,
    resolve_data,
    suite_for_tasks,
)
from thoughtmdp.settings.evaluation import EvalSettings, add_eval_arguments, eval_settings_from_args


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``eval``."""
    parser.add_argument("--model", required=True, help="base model folder (or vLLM model name)")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]PATH[,PATH...]",
        help="a report row: one or more adapter folders (e.g. one per training seed); repeatable",
    )
    parser.add_argument(
        "--base", action="store_true", help="add a 'base' row (implied without --adapter)"
    )
    parser.add_argument("--suite", help="'paper' (default) or a suite YAML file")
    parser.add_argument(
        "--tasks", help="comma-separated task names: entries of the suite or registered tasks"
    )
    parser.add_argument("--data-dir", help=f"folder of the suite's data files (or ${DATA_DIR_ENV})")
    parser.add_argument("--n", type=int, help="items per task and seed (default: the suite's)")
    parser.add_argument("--seeds", help="comma-separated item-sample seeds (default: the suite's)")
    parser.add_argument("--out", default="eval_results", help="output folder (resumed if present)")
    parser.add_argument("-k", default="1", help="comma-separated k of pass@k (each <= --samples)")
    add_eval_arguments(parser, EvalSettings())
    add_backend_arguments(parser)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The backend choice, shared by ``eval`` and ``audit-localization``."""
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: vLLM when installed"
    )
    parser.add_argument("--device", default="cpu", help="torch device of the transformers backend")


@dataclass(frozen=True)
class EvalPlan:
    """A checked ``eval`` command line.

    Attributes:
        model: The base model.
        suite: The tasks, item counts and seeds, with data paths resolved.
        methods: The report rows.
        settings: Rollout settings.
        ks: The k values of pass@k.
        out: The output folder.
    """

    model: str
    suite: Suite
    methods: tuple[Method, ...]
    settings: EvalSettings
    ks: tuple[int, ...]
    out: Path


def plan_from_args(args: argparse.Namespace) -> EvalPlan:
    """Check an ``eval`` command line and resolve its suite and adapters.

    Raises:
        ThoughtMDPError: On a bad value, an unknown task, a missing data file or adapter.
    """
    suite = select_suite(args.suite, args.tasks, args.data_dir)
    if args.n is not None:
        _positive("--n", args.n)
        suite = replace(suite, n=args.n, tasks=tuple(replace(e, n=None) for e in suite.tasks))
    if args.seeds is not None:
        suite = replace(suite, seeds=parse_ints("--seeds", args.seeds))
    settings = eval_settings_from_args(args, EvalSettings())
    ks = parse_ints("-k", args.k)
    if any(not 1 <= k <= settings.samples for k in ks):
        raise ThoughtMDPError(f"each k must be in 1..--samples ({settings.samples}), got {ks}")
    if settings.samples > 1 and settings.temperature == 0:
        print("warning: --samples > 1 at temperature 0 repeats one greedy chain", file=sys.stderr)
    methods = parse_methods(args.adapter, args.base or not args.adapter)
    return EvalPlan(args.model, suite, methods, settings, ks, Path(args.out))


def select_suite(suite: str | None, tasks: str | None, data_dir: str | None) -> Suite:
    """The suite named (default ``paper``), narrowed to ``tasks``, its data paths resolved.

    Raises:
        SuiteError: On an unknown task or a missing data file.
    """
    base = load_suite(suite or "paper")
    if tasks:
        base = suite_for_tasks([t.strip() for t in tasks.split(",") if t.strip()], base)
    return resolve_data(base, data_dir)


def parse_methods(values: list[str], with_base: bool) -> tuple[Method, ...]:
    """Report rows from ``--adapter [NAME=]PATH[,PATH...]`` values.

    Raises:
        ThoughtMDPError: If a folder holds no ``adapter_config.json`` or a name repeats.

    >>> parse_methods([], True)
    (Method(name='base', adapters=(None,)),)
    """
    methods = [Method("base")] if with_base else []
    for value in values:
        name, sep, paths = value.rpartition("=") if "=" in value else ("", "", value)
        folders = [check_adapter(p.strip()) for p in paths.split(",") if p.strip()]
        label = name if sep else Path(folders[0]).name if folders else ""
        if not label or any(m.name == label for m in methods):
            raise ThoughtMDPError(f"--adapter {value!r}: give each row a new name, NAME=PATH")
        methods.append(Method(label, tuple(folders)))
    return tuple(methods)


def check_adapter(folder: str) -> str:
    """The absolute path of an adapter folder.

    Raises:
        ThoughtMDPError: If the folder holds no ``adapter_config.json``.
    """
    if not (Path(folder) / "adapter_config.json").is_file():
        raise ThoughtMDPError(
            f"adapter folder {folder} holds no adapter_config.json; give folders written by "
            "PEFT's save_pretrained"
        )
    return str(Path(folder).resolve())


def parse_ints(flag: str, text: str) -> tuple[int, ...]:
    """Comma-separated integers.

    Raises:
        ThoughtMDPError: If an item is not an integer, or there is none.

    >>> parse_ints("--seeds", "0,42, 420")
    (0, 42, 420)
    """
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ThoughtMDPError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise ThoughtMDPError(f"{flag} needs at least one value")
    return values


def run(args: argparse.Namespace) -> int:
    """Run ``thoughtmdp eval``; returns the exit code (2 for a bad command line)."""
    from thoughtmdp.evaluation.records import RecordStore

    tasks: dict[str, Any] = {}
    try:
        plan = plan_from_args(args)
        tasks = {e.name: e.build() for e in plan.suite.tasks}
        store = RecordStore(plan.out, fingerprint(plan))
    except (ThoughtMDPError, FileNotFoundError, ValueError) as exc:
        _close(tasks.values())
        print(f"thoughtmdp eval: error: {exc}", file=sys.stderr)
        return 2
    from thoughtmdp.evaluation.backends import make_backend

    adapters = [a for m in plan.methods for a in m.adapters if a is not None]
    backend, kind = make_backend(plan.model, args.backend, adapters=adapters, device=args.device)
    try:
        return _evaluate(plan, tasks, store, backend, kind)
    finally:
        _close(tasks.values())
        backend.close()


def fingerprint(plan: EvalPlan) -> dict[str, Any]:
    """What records in the output folder must share with this run: model, sampling, tasks."""
    return {
        "model": plan.model,
        **plan.settings.fingerprint(),
        "tasks": {e.name: {"task": e.task, **e.task_kwargs()} for e in plan.suite.tasks},
    }


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
        "seeds": list(plan.suite.seeds),
        "methods": {m.name: list(m.adapters) for m in plan.methods},
    }
    report = build_report(result, plan.ks, plan.settings.samples, settings)
    for metric in report.metrics:
        console.print(to_rich(report, metric))
    paths = write_report(report, plan.out)
    console.print(
        f"graded {result.graded} rollouts, resumed {result.resumed}; wrote "
        + ", ".join(os.fspath(p) for p in paths)
    )
    return 0


def _close(tasks: Any) -> None:
    for task in tasks:
        task.close()


def _positive(flag: str, value: int) -> int:
    if value < 1:
        raise ThoughtMDPError(f"{flag} must be at least 1, got {value}")
    return value


COMMAND = Command(
    "eval",
    help="evaluate a model and its LoRA adapters on benchmark tasks (Table-3-style report)",
    run=run,
    arguments=arguments,
    description=(
        "Thought-level rollouts (the training prompt) on n items per task and seed, "
        "pass rate per task, mean ± SD over a method's runs. Results go to --out: "
        "results.md/.csv/.json and records.jsonl (per-item records; a rerun resumes)."
    ),
)
