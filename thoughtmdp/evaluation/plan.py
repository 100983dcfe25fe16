"""A checked ``thoughtmdp eval`` command line: the suite, the report rows and the settings.

With ``--run`` (or ``--config``) the model, the task with its options and the rollout
settings default to the ones the policy was trained with
(:mod:`~thoughtmdp.evaluation.trained`); options given on the command line still win.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.benchmark import Method
from thoughtmdp.evaluation.suite import Suite, load_suite, resolve_data, suite_for_tasks
from thoughtmdp.evaluation.trained import TrainedPolicy, policy_from_args, settings_from_args
from thoughtmdp.settings.evaluation import EvalSettings


@dataclass(frozen=True)
class EvalPlan:
    """A checked ``eval`` command line.

    Attributes:
        model: The base model.
        suite: The tasks, item counts and sample seed, with data paths resolved.
        methods: The report rows (each with one adapter per training seed).
        settings: Rollout settings.
        ks: The k values of pass@k.
        out: The output folder.
        policy: What the evaluated policy was trained with (``--run``, ``--config``).
    """

    model: str
    suite: Suite
    methods: tuple[Method, ...]
    settings: EvalSettings
    ks: tuple[int, ...]
    out: Path
    policy: TrainedPolicy | None = None


def plan_from_args(args: argparse.Namespace) -> EvalPlan:
    """Check an ``eval`` command line and resolve its suite and adapters.

    Raises:
        ThoughtMDPError: On a bad value, an unknown task, a missing data file or adapter, or
            a run folder or config that cannot be read.
    """
    policy = policy_from_args(args)
    if policy is None:
        suite = select_suite(args.suite, args.tasks, args.data_dir)
    else:
        suite = policy_suite(policy, args.suite, args.tasks, args.data_dir)
    if args.n is not None:
        _positive("--n", args.n)
        suite = replace(suite, n=args.n, tasks=tuple(replace(e, n=None) for e in suite.tasks))
    if getattr(args, "seeds", None) is not None:
        raise ThoughtMDPError(
            "--seeds is gone: every row is scored on one fixed item sample per task; give a "
            "row one adapter per training seed (--adapter NAME=PATH_S0,PATH_S42,PATH_S420), "
            "and pick the item sample with --sample-seed"
        )
    if args.sample_seed is not None:
        if args.sample_seed < 0:
            raise ThoughtMDPError(f"--sample-seed must be 0 or more, got {args.sample_seed}")
        suite = replace(suite, sample_seed=args.sample_seed)
    settings = settings_from_args(args, EvalSettings() if policy is None else policy.greedy)
    ks = parse_ints("-k", args.k)
    if any(not 1 <= k <= settings.samples for k in ks):
        raise ThoughtMDPError(f"each k must be in 1..--samples ({settings.samples}), got {ks}")
    if settings.samples > 1 and settings.temperature == 0:
        print("warning: --samples > 1 at temperature 0 repeats one greedy chain", file=sys.stderr)
    trained = policy is not None and policy.adapter is not None
    methods = parse_methods(args.adapter, args.base or not (args.adapter or trained))
    if policy is not None and policy.adapter is not None:
        if any(m.name == policy.row_name for m in methods):
            raise ThoughtMDPError(f"--adapter: the row name {policy.row_name!r} is the run's")
        methods = (*methods, Method(policy.row_name, (policy.adapter,)))
    model = args.model or (policy.model if policy is not None else "")
    return EvalPlan(model, suite, methods, settings, ks, Path(args.out), policy)


def select_suite(suite: str | None, tasks: str | None, data_dir: str | None) -> Suite:
    """The suite named (default ``paper``), narrowed to ``tasks``, its data paths resolved.

    Raises:
        SuiteError: On an unknown task or a missing data file.
    """
    base = load_suite(suite or "paper")
    if tasks:
        base = suite_for_tasks([t.strip() for t in tasks.split(",") if t.strip()], base)
    return resolve_data(base, data_dir)


def policy_suite(
    policy: TrainedPolicy, suite: str | None, tasks: str | None, data_dir: str | None
) -> Suite:
    """The tasks a trained policy is evaluated on: by default its own, as it was trained.

    Its task keeps the options it was trained with wherever it is named; ``--tasks`` adds
    suite entries and registered tasks, and ``--suite`` alone evaluates the whole suite.
    Without either, the suite's ``n`` is the run's count of held-out problems.

    Raises:
        SuiteError: On an unknown task or a missing data file.
    """
    if suite is None and tasks is None:
        n = policy.problems or Suite().n
        return resolve_data(Suite(name="run", n=n, tasks=(policy.entry,)), data_dir)
    base = load_suite(suite or "paper")
    entries = tuple(policy.entry if e.name == policy.task else e for e in base.tasks)
    if not tasks:
        return resolve_data(replace(base, tasks=entries), data_dir)
    if all(e.name != policy.task for e in entries):
        entries = (*entries, policy.entry)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    return resolve_data(suite_for_tasks(names, replace(base, tasks=entries)), data_dir)


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

    >>> parse_ints("-k", "0,42, 420")
    (0, 42, 420)
    """
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ThoughtMDPError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise ThoughtMDPError(f"{flag} needs at least one value")
    return values


def fingerprint(plan: EvalPlan) -> dict[str, Any]:
    """What records in the output folder must share with this run: model, sampling, tasks.

    The sample seed and training exclusions are not part of it: they choose which items are
    scored, not how an item is rolled out, so records of an earlier sample stay usable.
    """
    return {
        "model": plan.model,
        **plan.settings.fingerprint(),
        "tasks": {e.name: {"task": e.task, **e.task_kwargs()} for e in plan.suite.tasks},
    }


def _positive(flag: str, value: int) -> int:
    if value < 1:
        raise ThoughtMDPError(f"{flag} must be at least 1, got {value}")
    return value
