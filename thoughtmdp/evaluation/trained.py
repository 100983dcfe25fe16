"""How a policy was trained, so that an evaluation rolls it out the same way.

``thoughtmdp train`` writes a run's resolved settings to ``run_dir/config.yaml``: the base
model, the task and its options (its prompt templates among them), the chat template and the
caps of a chain. :func:`from_run` reads them, with one adapter version of the run;
:func:`from_config` reads them from a train or actor config file. ``thoughtmdp eval`` and
``thoughtmdp audit-localization`` roll out with these settings, so a run's adapter scores in
``eval`` what it scored in the run's held-out evaluation.

The embedded policy's model folder records the prompts it was taught in ``recipe.json``;
:func:`recorded_prompts` finds what a model was trained with and :func:`prompt_warnings`
names every evaluated task that prompts differently.
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from thoughtmdp.episodes.localization import LOCALIZER_TEMPLATE
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.suite import SuiteEntry
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE
from thoughtmdp.mdp.task import TASKS, VerifiableTask
from thoughtmdp.runs.files import CONFIG_FILE
from thoughtmdp.settings.evaluation import OPTIONS, EvalSettings, eval_settings_from_args
from thoughtmdp.settings.warmstart import RECIPE_FILE

PROMPT_FIELDS = ("prompt_template", "localizer_template")
"""Task options that decide what the model reads."""


@dataclass(frozen=True)
class TrainedPolicy:
    """A policy and the settings it was trained with.

    Attributes:
        source: The config file they were read from.
        model: The base model (the embedded policy's cache folder for an embedded run).
        adapter: The adapter folder evaluated; ``None``: the base model.
        task: The task trained on.
        task_options: Its options as the actors built it (prompt templates included).
        greedy: The held-out evaluation's rollouts: greedy, capped as the actors cap chains,
            in the actors' chat format.
        sampled: The same at the actors' temperature and top_p (the audit's chains).
        backend: The held-out evaluation's backend.
        engine_options: The actors' vLLM engine options.
        problems: Held-out problems the run evaluated (``None`` from an actor config).
        localizer_max_tokens: Longest localiser answer of the run's reset policy, if set.
    """

    source: Path
    model: str
    adapter: str | None
    task: str
    task_options: dict[str, Any] = field(default_factory=dict)
    greedy: EvalSettings = field(default_factory=EvalSettings)
    sampled: EvalSettings = field(default_factory=EvalSettings)
    backend: str = "auto"
    engine_options: dict[str, Any] = field(default_factory=dict)
    problems: int | None = None
    localizer_max_tokens: int | None = None

    @property
    def entry(self) -> SuiteEntry:
        """The trained task as a suite entry, named after the task."""
        return SuiteEntry(name=self.task, task=self.task, options=dict(self.task_options))

    @property
    def row_name(self) -> str:
        """The report row of its adapter: ``RUN/vNNNNNN`` (``base`` without one)."""
        if self.adapter is None:
            return "base"
        folder = Path(self.adapter)
        return f"{folder.parent.parent.name}/{folder.name}"


def from_run(run_dir: str | Path, version: int | None = None) -> TrainedPolicy:
    """A run's policy: its resolved config and one adapter version.

    Args:
        run_dir: The run folder ``thoughtmdp train`` wrote.
        version: The adapter version (``None``: the latest; 0: the base model).

    Returns:
        The policy.

    Raises:
        ThoughtMDPError: If the folder, its ``config.yaml`` or the version is missing, or the
            config holds a bad value (the message names the file).
    """
    from thoughtmdp.runs.export import find_adapter

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise ThoughtMDPError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise ThoughtMDPError(
            f"{run_dir} holds no {CONFIG_FILE} (the settings thoughtmdp train writes), so how "
            "its model was trained is unknown; give --model and --config with the run's settings"
        )
    if version is not None and version < 0:
        raise ThoughtMDPError(f"--version must be 0 or more, got {version}")
    adapter = None if version == 0 else str(find_adapter(run_dir, version).folder.resolve())
    return replace(from_config(path), adapter=adapter)


def from_config(path: str | Path, model: str | None = None) -> TrainedPolicy:
    """The policy a train config (resolved or not) or an actor config describes.

    A train config's embedded policy gets its model folder and its recipe's task options, as
    ``thoughtmdp train`` derives them.

    Args:
        path: The config file (``run_dir/config.yaml``, ``run_dir/configs/actor-0.yaml``).
        model: The base model, over the config's.

    Raises:
        ConfigError: If the file is missing or holds a bad key or value (naming the file).
    """
    from thoughtmdp.settings.actor import ActorConfig
    from thoughtmdp.settings.files import read_config
    from thoughtmdp.settings.loader import load
    from thoughtmdp.settings.train import HeldoutSettings, TrainConfig, resolve

    path = Path(path)
    keys = set(read_config(path))
    train_only = {f.name for f in fields(TrainConfig)} - {f.name for f in fields(ActorConfig)}
    if keys & train_only or not keys:
        config = load(TrainConfig, path)
        config = resolve(config, Path(config.run_dir or path.parent))
        actor, heldout = config.actor, config.heldout
        problems: int | None = heldout.problems
    else:
        actor, heldout, problems = load(ActorConfig, path), HeldoutSettings(), None
    greedy = heldout.eval_settings(actor)
    sampling = actor.sampling
    options = actor.episode.reset_policy_options
    return TrainedPolicy(
        source=path,
        model=model or actor.model,
        adapter=None,
        task=actor.task,
        task_options=dict(actor.task_options),
        greedy=greedy,
        sampled=replace(greedy, temperature=sampling.temperature, top_p=sampling.top_p),
        backend=heldout.backend,
        engine_options=dict(actor.engine_options),
        problems=problems,
        localizer_max_tokens=options.get("max_tokens") if isinstance(options, dict) else None,
    )


def policy_from_args(args: argparse.Namespace) -> TrainedPolicy | None:
    """The policy ``--run``/``--version`` or ``--config`` name (``--model`` over its model).

    Returns:
        The policy, or ``None`` for a bare ``--model``.

    Raises:
        ThoughtMDPError: If the options clash or name nothing, or the run or config is bad.
    """
    if args.run and args.config:
        raise ThoughtMDPError("give --run or --config, not both")
    if args.version is not None and not args.run:
        raise ThoughtMDPError("--version picks an adapter version of --run RUN_DIR; give --run")
    if args.run:
        policy = from_run(args.run, args.version)
        return replace(policy, model=args.model) if args.model else policy
    if args.config:
        return from_config(args.config, args.model)
    if not args.model:
        raise ThoughtMDPError("give --model (or --run RUN_DIR to evaluate a run as it was trained)")
    return None


def settings_from_args(
    args: argparse.Namespace, defaults: EvalSettings, **fixed: Any
) -> EvalSettings:
    """The rollout options of a command line over ``defaults``; an option not given is unset.

    Args:
        args: Parsed arguments whose rollout options default to ``None``.
        defaults: The values of the options left out (a run's, or the command's).
        **fixed: Fields the command sets from options of its own.

    Raises:
        ConfigError: On a value out of range, naming its option.
    """
    unset = {name: getattr(defaults, name) for name in OPTIONS if getattr(args, name) is None}
    filled = argparse.Namespace(**{**vars(args), **unset})
    return eval_settings_from_args(filled, defaults, **fixed)


@dataclass(frozen=True)
class RecordedPrompts:
    """The templates a model was trained with, and where that is recorded.

    Attributes:
        templates: ``prompt_template`` and ``localizer_template``.
        source: The file that records them.
    """

    templates: dict[str, str]
    source: str


def recorded_prompts(model: str, policy: TrainedPolicy | None) -> RecordedPrompts | None:
    """What the model was trained to read: the policy's task options, else ``recipe.json``.

    Args:
        model: The base model folder (or a hub name).
        policy: The policy's training settings, when given.

    Returns:
        The templates, or ``None`` when nothing records them.
    """
    if policy is not None:
        defaults = template_defaults(policy.task)
        return RecordedPrompts({**defaults, **_templates(policy.task_options)}, str(policy.source))
    recipe = Path(model) / RECIPE_FILE
    try:
        data = json.loads(recipe.read_text())
    except (OSError, ValueError):
        return None
    templates = _templates(data) if isinstance(data, dict) else {}
    return RecordedPrompts(templates, str(recipe)) if templates else None


def template_defaults(task: str) -> dict[str, str]:
    """The templates a task renders when its options set none (its constructor's defaults).

    >>> template_defaults("arith_chain")["prompt_template"] == ROLLOUT_TEMPLATE
    True
    """
    defaults = {"prompt_template": ROLLOUT_TEMPLATE, "localizer_template": LOCALIZER_TEMPLATE}
    try:
        parameters = inspect.signature(TASKS.get(task)).parameters
    except (TypeError, ValueError):
        return defaults
    for name in PROMPT_FIELDS:
        parameter = parameters.get(name)
        if parameter is not None and isinstance(parameter.default, str):
            defaults[name] = parameter.default
    return defaults


def prompt_warnings(
    tasks: Mapping[str, VerifiableTask],
    recorded: RecordedPrompts | None,
    names: Sequence[str] = ("prompt_template",),
) -> list[str]:
    r"""One line for each task whose template differs from the one the model was trained with.

    Args:
        tasks: The evaluated tasks, by the report's names.
        recorded: What the model was trained with (``None``: unknown, no warnings).
        names: The templates compared.

    Returns:
        The warnings.

    >>> from thoughtmdp.envs.arith_chain import ArithChainTask
    >>> recorded = RecordedPrompts({"prompt_template": "Q: {question}\n"}, "recipe.json")
    >>> prompt_warnings({"arith": ArithChainTask()}, recorded)[0][:72]
    "warning: task 'arith' renders its prompt_template as 'Work through the p"
    >>> prompt_warnings({"arith": ArithChainTask(prompt_template="Q: {question}\n")}, recorded)
    []
    """
    if recorded is None:
        return []
    lines = []
    for name, task in tasks.items():
        for template in names:
            trained, used = recorded.templates.get(template), getattr(task, template, None)
            if trained is None or used is None or used == trained:
                continue
            lines.append(
                f"warning: task {name!r} renders its {template} as {_head(used)}, but the "
                f"model was trained with {_head(trained)} ({recorded.source}); its scores do "
                "not measure the trained policy. Evaluate a run with --run RUN_DIR (or "
                f"--config CONFIG), or set the task's {template}"
            )
    return lines


def _templates(options: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(options[k]) for k in PROMPT_FIELDS if isinstance(options.get(k), str)}


def _head(template: str, width: int = 40) -> str:
    """A template's start, quoted: enough to tell two templates apart."""
    return repr(template if len(template) <= width else template[:width] + "...")
