"""Checks a run's settings pass before anything starts: names, options, files, model paths.

Every mistake these checks find would otherwise surface seconds or minutes later, inside a
learner or actor process, as a traceback. Each raises a one-line :class:`ConfigError` that
names the key to fix. They run in the ``thoughtmdp`` process itself, and only import what a
check needs (a task's module, never torch).

Model and data paths: a value that looks like a local path (it starts with ``/``, ``.`` or
``~``, holds more than one ``/``, or ends in a data file's suffix) must exist; anything else
(``Qwen/Qwen2.5-1.5B-Instruct``, ``AI-MO/NuminaMath-CoT``) is taken for a Hugging Face hub
name and left to the process that loads it.
"""

from __future__ import annotations

import difflib
import inspect
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thoughtmdp.data import is_data_file, read_rows
from thoughtmdp.episodes.reset_policies import make_reset_policy
from thoughtmdp.errors import ConfigError, ThoughtMDPError
from thoughtmdp.mdp.task import TASKS, VerifiableTask
from thoughtmdp.settings.convert import within
from thoughtmdp.settings.warmstart import RECIPE_TASKS

if TYPE_CHECKING:
    from thoughtmdp.settings.actor import ActorConfig
    from thoughtmdp.settings.train import TrainConfig

DATA_OPTIONS = ("data",)
"""Task options that name the task's data: a file, a folder or a hub dataset."""


def check_train(config: TrainConfig, files: bool = True) -> None:
    """Check a ``thoughtmdp train`` config beyond its types: everything but the run itself.

    Args:
        config: A loaded train config.
        files: Also check the file system: the model folder, data files (read and parsed,
            and the task built on them), templates, certificates, installed packages.
            Without it only names, options and numbers are checked (``config show`` of a
            shipped config whose data is not downloaded yet).

    Raises:
        ConfigError: One line naming the key to fix.
    """
    from thoughtmdp.settings.actor import check_ready as actor_ready
    from thoughtmdp.settings.learner import check_ready as learner_ready
    from thoughtmdp.settings.train import resolve

    actor = config.actor
    if config.embedded and actor.task != config.warmstart.task:
        fix = "set model= to a model that can (a folder or a hub name)"
        if actor.task in RECIPE_TASKS:
            fix = f"set warmstart.task={actor.task} (an embedded policy for it), or {fix}"
        raise ConfigError(
            f"actor.task: the embedded policy (no model=) is built for "
            f"{config.warmstart.task}, not {actor.task!r}: {fix}"
        )
    resolved = resolve(config, config.run_dir or Path("runs/check"))
    check_episode(actor, "actor.")
    check_task_options(resolved.actor.task, resolved.actor.task_options, "actor.task_options")
    if not files:
        return
    if not config.embedded:
        check_model_path(config.model, "model")
    check_port_free(config.learner.bind, "learner.bind")
    with _keyed("learner"):
        learner_ready(resolved.learner)
    with _keyed("actor"):
        actor_ready(resolved.actor)
    splits = {"actor.split": actor.split}
    if config.heldout.problems:
        splits["heldout.split"] = config.heldout.split
    check_task(resolved.actor, "actor.task_options", splits)


def check_episode(actor: ActorConfig, prefix: str = "") -> None:
    """Build the reset policy of ``actor.episode`` with its options (cheap, no model).

    Raises:
        ConfigError: For options the policy does not take or values it refuses, naming
            ``episode.reset_policy_options``.
    """
    episode = actor.episode
    shape = episode.resolve()
    if shape.num_resets == 0:
        return
    try:
        make_reset_policy(shape.reset_policy, **episode.reset_policy_options)
    except ThoughtMDPError as exc:
        raise ConfigError(f"{prefix}episode.reset_policy_options: {exc}") from None


def check_task_options(name: str, options: dict[str, Any], key: str) -> None:
    """Check that the task ``name`` takes ``options`` and that none it needs is missing.

    Args:
        name: A registered task name.
        options: Its keyword arguments.
        key: How the options are set, e.g. ``actor.task_options``.

    Raises:
        ConfigError: For an unknown task, an option it does not take (with the closest
            one) or a required option missing.
    """
    try:
        factory = TASKS.get(name)
    except ThoughtMDPError as exc:
        raise ConfigError(f"{key.rsplit('.', 1)[0]}.task: {exc}") from None
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read: the task checks its options
        return
    parameters = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        named = options.keys() & parameters.keys()
        options = {k: options[k] for k in named}
    taken = [
        n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    for option in options:
        if option not in parameters:
            close = difflib.get_close_matches(option, taken, n=1, cutoff=0.5)
            hint = f"Did you mean {key}.{close[0]}?" if close else f"It takes: {', '.join(taken)}"
            raise ConfigError(f"{key}.{option}: task {name!r} takes no such option. {hint}")
    for option, parameter in parameters.items():
        required = parameter.default is parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD,
            parameter.KEYWORD_ONLY,
        )
        if required and option not in options:
            raise ConfigError(
                f"{key}.{option}: task {name!r} needs it, e.g. {key}.{option}=/data/train.jsonl"
                if option in DATA_OPTIONS
                else f"{key}.{option}: task {name!r} needs it; set {key}.{option}=VALUE"
            )


def check_task(actor: ActorConfig, key: str, splits: dict[str, str]) -> None:
    """Check the task's data files, then build it and read ``splits`` when that is local work.

    A task whose data is a hub dataset is not built here (that would download it).

    Args:
        actor: Resolved actor settings (task and options).
        key: How the options are set, e.g. ``actor.task_options``.
        splits: The splits that must hold problems, by the key that names each.

    Raises:
        ConfigError: For a missing or unreadable data file, a task that refuses its
            options, or a split without problems; the message names the key.
    """
    remote = False
    for option in DATA_OPTIONS:
        values = actor.task_options.get(option)
        for value in values if isinstance(values, list | tuple) else [values]:
            if isinstance(value, str | Path):
                remote |= not check_data_path(str(value), f"{key}.{option}")
    if remote:
        return
    task = _build_task(actor, key)
    try:
        for split_key, split in splits.items():
            try:
                problems = task.problems(split)
            except Exception as exc:
                raise ConfigError(f"{split_key}: {_one_line(exc)}") from None
            if not problems:
                raise ConfigError(f"{split_key}: task {actor.task!r} has no problems in {split!r}")
    finally:
        task.close()


def _build_task(actor: ActorConfig, key: str) -> VerifiableTask:
    factory = TASKS.get(actor.task)
    try:
        task = factory(**actor.task_options)
    except Exception as exc:  # the task's own check of an option or of its data
        message = _one_line(exc)
        for option in actor.task_options.keys() | _parameter_names(factory):
            message = re.sub(rf"(?<![\w.]){re.escape(option)}=", f"{key}.{option}=", message)
        raise ConfigError(f"{key}: {message}") from None
    if not isinstance(task, VerifiableTask):
        raise ConfigError(f"{key}: task {actor.task!r} built a {type(task).__name__}")
    return task


def check_data_path(value: str, key: str) -> bool:
    """Check a data option: a local file must exist and parse; a hub name passes.

    Returns:
        Whether ``value`` is local (so the task can be built without the network).

    Raises:
        ConfigError: For a missing local path, or a data file that cannot be read.
    """
    path = Path(value).expanduser()
    if not looks_local(value) and not path.exists():
        return False
    if not path.exists():
        raise ConfigError(f"{key}: no such file or folder: {value}")
    if path.is_file() and is_data_file(path):
        try:
            read_rows(path)
        except (ThoughtMDPError, OSError, ValueError) as exc:
            raise ConfigError(f"{key}: {_one_line(exc)}") from None
    return True


def check_model_path(value: str, key: str) -> None:
    """Check a model given as a local folder; a hub name (``org/name``) passes unchecked.

    Raises:
        ConfigError: For a local-looking path that does not exist, or a folder that is no
            Hugging Face model (no ``config.json``).

    >>> check_model_path("Qwen/Qwen2.5-1.5B-Instruct", "model")  # a hub name: not checked
    """
    path = Path(value).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file():
            raise ConfigError(f"{key}: {value} holds no config.json; it is no model folder")
        return
    if looks_local(value):
        raise ConfigError(
            f"{key}: no such folder: {value} (a local path; a hub model is named org/name)"
        )


def check_port_free(address: str, key: str) -> None:
    """Check that nothing listens on the TCP port of ``address`` (port 0: any free port).

    Raises:
        ConfigError: If binding it fails, e.g. another run's learner holds it.

    >>> check_port_free("tcp://127.0.0.1:0", "bind")
    """
    match = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+)", address)
    if match is None or int(match[2]) == 0:
        return
    host = "0.0.0.0" if match[1] == "*" else match[1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds
        try:
            probe.bind((host, int(match[2])))
        except OSError as exc:
            raise ConfigError(
                f"{key}: cannot bind {address} ({exc.strerror}); another run may hold it: "
                f"set {key}=tcp://127.0.0.1:0 for a free port"
            ) from None


def looks_local(value: str) -> bool:
    """Whether ``value`` can only be a local path, not a Hugging Face hub name.

    >>> [looks_local(v) for v in ("Qwen/Qwen2.5-7B", "/m", "./m", "a/b/c", "train.jsonl")]
    [False, True, True, True, True]
    """
    return (
        value.startswith(("/", ".", "~", "\\"))
        or value.count("/") > 1
        or is_data_file(value)
        or Path(value).suffix.lower() in (".yaml", ".yml", ".csv", ".txt", ".arrow")
    )


@contextmanager
def _keyed(section: str) -> Iterator[None]:
    """Prefix the key of a :class:`ConfigError` raised inside with ``section``."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(within(section, str(exc))) from None


def _parameter_names(factory: Any) -> set[str]:
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
