"""Evaluation suites: the tasks to evaluate, their data, and the one item sample of each.

A suite is a YAML file::

    name: my-suite
    n: 500                 # items sampled per task (all items when fewer)
    sample_seed: 0         # seed of the one item sample per task, shared by every row
    tasks:
      - name: csqa                         # the report's column
        task: qa                           # a registered task (default: qa)
        preset: commonsenseqa              # QATask layout of the benchmark
        data: commonsenseqa_validation.jsonl
        answer_type: multiple_choice       # optional: the preset sets it
        n: 200                             # optional: overrides the suite's n
        options: {limit: 1000}             # optional: more task arguments
        exclude_training: {data: train.jsonl, limit: 400}  # optional: see below

Each task is scored on one fixed sample of items, drawn once with ``sample_seed``: the base
model and every adapter see the same items, so a row's spread (the SD over its adapters, one
per training seed) measures training, not which items were drawn. ``exclude_training`` names
the task a training run used (its arguments, plus ``task:`` when it is another task): its
problems, matched by their whitespace-normalised, case-folded question text, are left out of
the pool before the sample is drawn, so no training problem is ever an evaluation item.

Relative ``data`` paths are resolved against a data folder (``--data-dir``, else the
``THOUGHTMDP_EVAL_DATA`` environment variable, else the suite file's folder); a ``data``
value without a data-file ending that is not a file names a Hugging Face dataset. The
built-in ``paper`` suite (``thoughtmdp/suites/paper.yaml``) holds the paper's ten benchmarks.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from thoughtmdp.data import is_data_file
from thoughtmdp.errors import ConfigError, ThoughtMDPError
from thoughtmdp.mdp.task import TASKS, VerifiableTask, make_task
from thoughtmdp.settings.convert import from_dict
from thoughtmdp.types import Problem

DATA_DIR_ENV = "THOUGHTMDP_EVAL_DATA"
"""Environment variable naming the folder that holds the suite's data files."""

BUILTIN_SUITES = ("paper",)
"""Suites shipped in ``thoughtmdp/suites/`` (``<name>.yaml``)."""


class SuiteError(ThoughtMDPError, ValueError):
    """A suite file is malformed, names an unknown task, or its data cannot be found."""


@dataclass(frozen=True)
class SuiteEntry:
    """One task of a suite: a column of the report.

    Attributes:
        name: The column name (short, unique in the suite).
        task: A registered task name.
        data: Data file, glob or dataset name, passed to the task as ``data``.
        preset: Passed to the task as ``preset`` (QATask's benchmark layouts).
        answer_type: Passed to the task as ``answer_type``.
        n: Items sampled for this task; ``None`` uses the suite's.
        options: Further task arguments.
        exclude_training: Arguments of the training task whose problems must not be
            evaluated (``task`` names it, default this entry's task); ``None``: no exclusion.
    """

    name: str = ""
    task: str = "qa"
    data: str | None = None
    preset: str | None = None
    answer_type: str | None = None
    n: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    exclude_training: dict[str, Any] | None = None

    def task_kwargs(self) -> dict[str, Any]:
        """The arguments the task is built with: ``options`` plus the set named fields."""
        named = {"data": self.data, "preset": self.preset, "answer_type": self.answer_type}
        return {**self.options, **{k: v for k, v in named.items() if v is not None}}

    def build(self) -> VerifiableTask:
        """Build the task.

        Returns:
            The task object.

        Raises:
            UnknownNameError: If the task is not registered.
        """
        return make_task(self.task, **self.task_kwargs())

    def build_training(self) -> VerifiableTask | None:
        """The training task of ``exclude_training``; ``None`` without one.

        Raises:
            UnknownNameError: If its task is not registered.
        """
        if self.exclude_training is None:
            return None
        options = dict(self.exclude_training)
        return make_task(str(options.pop("task", self.task)), **options)


@dataclass(frozen=True)
class Suite:
    """A set of tasks evaluated together, with the item count and the item sample's seed.

    Attributes:
        name: The suite's name.
        n: Items sampled per task.
        sample_seed: Seed of the item sample: one sample per task, drawn once and shared by
            the base model and every adapter. It is neither a training seed (those are the
            adapters of a row) nor the generation seed (``EvalSettings.sampling_seed``).
        tasks: The tasks, in column order.
        folder: The suite file's folder (for relative data paths); ``None`` when built in.
    """

    name: str = "suite"
    n: int = 500
    sample_seed: int = 0
    tasks: tuple[SuiteEntry, ...] = ()
    folder: str | None = None

    def entry(self, name: str) -> SuiteEntry:
        """The task called ``name``.

        Raises:
            SuiteError: If the suite has no such task.
        """
        for entry in self.tasks:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.tasks)
        raise SuiteError(f"suite {self.name!r} has no task {name!r}; its tasks: {known}")

    def items(self, entry: SuiteEntry) -> int:
        """Items sampled for ``entry``."""
        return entry.n if entry.n is not None else self.n


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """Read a built-in suite by name or a suite YAML file.

    Args:
        name_or_path: ``"paper"`` or a path to a YAML file.

    Returns:
        The suite, checked: known keys and types, unique non-empty task names, registered
        tasks, positive item counts.

    Raises:
        SuiteError: If the file is missing, not YAML, or breaks one of those rules.

    >>> suite = load_suite("paper")
    >>> suite.n, suite.sample_seed, [e.name for e in suite.tasks][:3]
    (500, 0, ['oly', 'hmmt', 'lvl5'])
    """
    import yaml

    name = os.fspath(name_or_path)
    if name in BUILTIN_SUITES:
        text, folder = (
            resources.files("thoughtmdp").joinpath(f"suites/{name}.yaml").read_text(),
            None,
        )
    elif Path(name).is_file():
        text, folder = Path(name).read_text(), str(Path(name).resolve().parent)
    else:
        raise SuiteError(
            f"no suite {name!r}: give a built-in suite ({', '.join(BUILTIN_SUITES)}) or a YAML file"
        )
    try:
        data = yaml.safe_load(text) or {}
        if isinstance(data, dict) and "seeds" in data:
            raise SuiteError(
                f"suite {name}: 'seeds' is no longer read: each task is scored on one fixed "
                "item sample, shared by every row, and a row's SD is taken over its adapters "
                "(one per training seed); replace 'seeds: [...]' with 'sample_seed: N' "
                "(default 0)"
            )
        suite = from_dict(Suite, {**data, "folder": folder} if isinstance(data, dict) else data)
    except ConfigError as exc:
        raise SuiteError(f"suite {name}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"suite {name}: not valid YAML: {exc}") from None
    _check(suite, name)
    return suite


def suite_for_tasks(names: Sequence[str], base: Suite) -> Suite:
    """A suite of the named tasks: entries of ``base``, or registered tasks with defaults.

    Args:
        names: Task names; each an entry of ``base`` or a registered task.
        base: The suite whose entries, ``n`` and sample seed are used.

    Returns:
        The suite, in the order of ``names``.

    Raises:
        SuiteError: If a name is neither (the message lists both kinds).

    >>> [e.task for e in suite_for_tasks(["csqa", "arith_chain"], load_suite("paper")).tasks]
    ['qa', 'arith_chain']
    """
    entries = []
    for name in names:
        if any(e.name == name for e in base.tasks):
            entries.append(base.entry(name))
        elif name in TASKS:
            entries.append(SuiteEntry(name=name, task=name))
        else:
            raise SuiteError(
                f"unknown task {name!r}: not in suite {base.name!r} "
                f"({', '.join(e.name for e in base.tasks)}) nor registered "
                f"({', '.join(TASKS.names())})"
            )
    return dataclasses.replace(base, tasks=tuple(entries))


def resolve_data(suite: Suite, data_dir: str | os.PathLike[str] | None = None) -> Suite:
    """The suite with every relative data path made absolute and checked to exist.

    Args:
        suite: The suite.
        data_dir: Folder of the data files; ``None`` reads ``THOUGHTMDP_EVAL_DATA``, then
            falls back to the suite file's folder.

    Returns:
        The suite with absolute paths (dataset names are kept as they are).

    Raises:
        SuiteError: If a file (or every file of a glob) is missing; the message names the
            task, the expected file and what its rows should hold.
    """
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or suite.folder
    folder = None if chosen is None else os.fspath(chosen)
    entries = [_resolve_entry(e, folder, suite.name) for e in suite.tasks]
    return dataclasses.replace(suite, tasks=tuple(entries))


def sample_problems(problems: Sequence[Problem], n: int, seed: int) -> list[Problem]:
    """``n`` problems drawn without replacement by ``seed``, in their original order.

    The draw is a prefix of one seeded permutation, so a larger ``n`` keeps every problem a
    smaller one drew (items already graded stay useful).

    Args:
        problems: All problems of the split.
        n: How many to draw; all of them when there are fewer.
        seed: Seed of the draw.

    Returns:
        The drawn problems.

    >>> ps = [Problem(str(i), "q") for i in range(10)]
    >>> [p.id for p in sample_problems(ps, 3, seed=0)]
    ['2', '4', '6']
    >>> set(sample_problems(ps, 3, 0)) <= set(sample_problems(ps, 5, 0))
    True
    """
    order = np.random.default_rng(seed).permutation(len(problems))[:n]
    return [problems[int(i)] for i in sorted(order)]


def _resolve_entry(entry: SuiteEntry, folder: str | None, suite: str) -> SuiteEntry:
    if entry.exclude_training is not None and entry.exclude_training.get("data") is not None:
        training = SuiteEntry(
            name=f"{entry.name}.exclude_training",
            task=str(entry.exclude_training.get("task", entry.task)),
            data=str(entry.exclude_training["data"]),
        )
        data = _resolve_entry(training, folder, suite).data
        entry = dataclasses.replace(
            entry, exclude_training={**entry.exclude_training, "data": data}
        )
    data = entry.data
    if data is None:
        return entry
    data = os.path.expanduser(os.path.expandvars(data))
    pattern = any(c in data for c in "*?[")
    if not (pattern or is_data_file(data) or os.path.exists(data)):
        if not os.path.isabs(data) and folder and os.path.exists(os.path.join(folder, data)):
            return dataclasses.replace(entry, data=os.path.join(folder, data))
        return entry  # a Hugging Face dataset name
    if not os.path.isabs(data):
        if folder is None:
            raise SuiteError(
                f"task {entry.name!r} of suite {suite!r}: data path {data!r} is relative; point "
                f"--data-dir (or {DATA_DIR_ENV}) at the folder holding your copy{_expects(entry)}"
            )
        data = os.path.join(folder, data)
    if not (glob.glob(data) if pattern else os.path.exists(data)):
        raise SuiteError(
            f"task {entry.name!r} of suite {suite!r}: expected data file {data}, which does not "
            f"exist{_expects(entry)}; point --data-dir (or {DATA_DIR_ENV}) at your copies"
        )
    return dataclasses.replace(entry, data=data)


def _expects(entry: SuiteEntry) -> str:
    if entry.task != "qa" or entry.preset is None:
        return ""
    from thoughtmdp.envs.math.qa_presets import PRESETS

    preset = PRESETS.get(entry.preset)
    return f" ({preset.expects})" if preset else ""


def _check(suite: Suite, name: str) -> None:
    if not suite.tasks:
        raise SuiteError(f"suite {name}: 'tasks' must list at least one task")
    seen: set[str] = set()
    for i, entry in enumerate(suite.tasks):
        where = f"suite {name}: tasks[{i}]"
        if not entry.name:
            raise SuiteError(f"{where}: 'name' is required (the report's column)")
        if entry.name in seen:
            raise SuiteError(f"{where}: task name {entry.name!r} is used twice")
        seen.add(entry.name)
        if entry.task not in TASKS:
            raise SuiteError(
                f"{where}: unknown task {entry.task!r}; registered: {', '.join(TASKS.names())}"
            )
        if entry.n is not None and entry.n < 1:
            raise SuiteError(f"{where}: n must be at least 1, got {entry.n}")
    if suite.n < 1:
        raise SuiteError(f"suite {name}: n must be at least 1")
