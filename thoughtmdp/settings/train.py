"""Settings of ``thoughtmdp train``: the run, and the learner's and actors' settings inside it.

A train config holds a whole learner config (``learner:``) and a whole actor config
(``actor:``), exactly as ``thoughtmdp learner`` and ``thoughtmdp actor`` read them, plus what
only a local run needs: where it writes, which model (the embedded policy when none is
given), how many actors, its time budget and the held-out evaluation. The keys that tie the
processes together (the model path, the address, shard numbers, the learner's temperature)
are derived here, once, by :func:`resolve`; setting one by hand is an error that names the
key to set instead.

The defaults are the embedded run: asynchronous SRPO (``1x4``) on ArithChain with a tiny
model warm-started from scratch, sized for a 2-core CPU machine.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.actor import ActorConfig, SamplingSettings
from thoughtmdp.settings.convert import to_dict
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.settings.learner import LearnerConfig, LoraSettings, OptimSettings
from thoughtmdp.settings.placement import PlacementSettings, RaySettings
from thoughtmdp.settings.warmstart import WarmStartRecipe, model_folder

FREE_PORT = "tcp://127.0.0.1:0"
"""``learner.bind`` default: a free loopback port, picked when the run starts."""


def embedded_learner() -> LearnerConfig:
    """Learner settings of the embedded run (a ~0.7M-parameter model on two CPU cores)."""
    return LearnerConfig(
        bind=FREE_PORT,
        prompts_per_step=16,  # 128 rollouts a step: big enough for a stable gradient
        prompts_per_minibatch=16,  # one optimiser step (one adapter version) a step
        rollouts_per_microbatch=128,
        shared_prefix=True,  # the prompt (and a reset prefix) is run once per group
        max_steps=140,  # the cosine decay's length; about 8 minutes here
        checkpoint_every=50,
        lora=LoraSettings(rank=16, alpha=32),  # r=64 is far larger than this model needs
        # Far larger than for 14B (5e-4 made the greedy pass fall). Decaying it to 0 keeps the
        # late greedy pass rate: at a constant 2e-4 it peaked mid-run and fell back.
        optim=OptimSettings(lr=2e-4, schedule="cosine"),
    )


def embedded_actor() -> ActorConfig:
    """Actor settings of the embedded run (task options come from the warm-start recipe)."""
    return ActorConfig(
        max_thoughts=6,  # chains have 3 steps; a cap twice that ends rambling early
        max_total_tokens=256,
        # Sampling near the greedy policy puts the failures (and so the resets) on the
        # mistakes greedy decoding makes; at 1.0 most failures are the traces' injected slips.
        sampling=SamplingSettings(temperature=0.6, top_p=1.0, max_tokens=24),
        in_flight=16,  # one step of episodes: actors stay 2-3 versions behind, not more
        max_batch_size=128,
    )


@dataclass(frozen=True)
class HeldoutSettings:
    """The held-out evaluation: greedy pass rate before training, after it and in between.

    Attributes:
        problems: Problems of ``split`` evaluated (the first ones); 0 skips the evaluation.
        split: The split they come from (never the training split).
        versions: Adapter versions evaluated between the first and the last, evenly spaced,
            for the learning curves.
        backend: ``transformers`` (no start-up cost, right for small models) or ``vllm``.
        concurrency: Rollouts in flight at once.
        samples: Rollouts per problem sampled at the actors' temperature and top_p, beside
            the greedy one, for sampled pass@1 (the mean over problems of each problem's
            share of passing samples) and its standard error; sample j of a problem has the
            same seed at every version and in every run, so versions and runs are compared
            on the same draws. 0: greedy only.
    """

    problems: int = 1000  # about 10 s a version; a paired interval of about +-3 points
    split: str = "test"
    versions: int = 4
    backend: Literal["transformers", "vllm"] = "transformers"
    concurrency: int = 64
    samples: int = 0

    def __post_init__(self) -> None:
        for name in ("problems", "versions", "samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected 0 or more, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency: expected 1 or more, got {self.concurrency}")

    def eval_settings(self, actor: ActorConfig) -> EvalSettings:
        """Greedy rollouts capped as the actors cap their chains, prompts in their chat format."""
        return EvalSettings(
            max_tokens=actor.sampling.max_tokens,
            max_thoughts=actor.max_thoughts,
            max_total_tokens=actor.max_total_tokens,
            concurrency=self.concurrency,
            chat_template=actor.chat_template,
        )

    def sampled_eval_settings(self, actor: ActorConfig) -> EvalSettings:
        """The greedy settings at the actors' temperature and top_p, ``samples`` per problem.

        The sampling seed stays the default one, so the draws do not depend on the run.

        Raises:
            ConfigError: If ``samples`` is 0.
        """
        return replace(
            self.eval_settings(actor),
            temperature=actor.sampling.temperature,
            top_p=actor.sampling.top_p,
            samples=self.samples,
        )


DERIVED: dict[str, str] = {
    "learner.model": "model",
    "learner.run_dir": "run_dir",
    "learner.loss.temperature": "actor.sampling.temperature",
    "actor.model": "model",
    "actor.learner": "learner.bind",
    "actor.name": "actors",
    "actor.shard": "actors",
    "actor.num_shards": "actors",
    "actor.lora_rank": "learner.lora.rank",
    "actor.adapter_root": "run_dir",
    "actor.max_episodes": "learner.max_steps",
}
"""Keys ``thoughtmdp train`` sets itself, and the key each one comes from."""


@dataclass(frozen=True)
class TrainConfig:
    """One ``thoughtmdp train`` run: a learner and actors on this machine, over loopback.

    Attributes:
        run_dir: Output folder (``None``: ``runs/<date>-<time>-<random>-<method>``); it receives the
            resolved ``config.yaml``, the learner's ``metrics.jsonl``, TensorBoard events,
            checkpoints and adapters, ``heldout.json``, ``summary.json``, logs and plots.
        model: Base model folder; empty: the embedded policy built by ``warmstart``.
        warmstart: Recipe of the embedded policy (used when ``model`` is empty).
        actors: Actor processes; each samples its own shard of the problems.
        max_minutes: Wall-clock budget of the training phase; the learner stops after the
            step that is running when it ends (``None``: only ``learner.max_steps`` counts).
        threads: Torch threads of each process (``None``: as many as its cores, see
            ``placement``).
        placement: The cores and GPUs of the learner and of each actor (``launcher=local``).
        launcher: ``local`` (processes on this host) or ``ray`` (Ray actors on the cluster
            at ``RAY_ADDRESS``, placed by ``ray``; ``pip install "thoughtmdp[ray]"``).
        ray: Resources and nodes of the learner and the actors under ``launcher=ray``.
        heldout: The held-out evaluation.
        plots: Draw the run's plots into ``run_dir/plots`` at the end.
        learner: The learner (``thoughtmdp learner`` settings); ``model``, ``run_dir`` and
            ``loss.temperature`` are derived, ``bind`` defaults to a free loopback port.
        actor: Every actor (``thoughtmdp actor`` settings); ``model``, ``learner``,
            ``name``, ``shard``, ``num_shards``, ``lora_rank``, ``adapter_root`` and
            ``max_episodes`` are derived.
    """

    run_dir: Path | None = None
    model: str = ""
    warmstart: WarmStartRecipe = field(default_factory=WarmStartRecipe)
    actors: int = 1
    max_minutes: float | None = 8.0
    threads: int | None = None
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    launcher: Literal["local", "ray"] = "local"
    ray: RaySettings = field(default_factory=RaySettings)
    heldout: HeldoutSettings = field(default_factory=HeldoutSettings)
    plots: bool = True
    learner: LearnerConfig = field(default_factory=embedded_learner)
    actor: ActorConfig = field(default_factory=embedded_actor)

    DERIVED_KEYS: ClassVar[dict[str, str]] = DERIVED

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ConfigError(f"actors: expected 1 or more, got {self.actors}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes: expected a positive number, got {self.max_minutes}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: expected 1 or more, got {self.threads}")
        batch = self.actors * self.actor.in_flight
        if self.actor.batch_barrier and batch != self.learner.prompts_per_step:
            raise ConfigError(
                f"actor.batch_barrier: actors x actor.in_flight ({batch}) must equal "
                f"learner.prompts_per_step ({self.learner.prompts_per_step}), or the "
                "learner waits for episodes the actors only start after its step"
            )

    @property
    def embedded(self) -> bool:
        """Whether the run uses the embedded policy (no ``model`` given)."""
        return not self.model


def check_not_derived(config: TrainConfig) -> None:
    """Check a train config before anything starts: derived keys, then everything else.

    Refuses a derived key set by hand (:func:`check_derived_keys`), then runs every check
    of :func:`thoughtmdp.settings.checks.check_train`: task and options, reset policy, data
    files, model path, templates and packages.

    Raises:
        ConfigError: One line naming the key to fix.
    """
    from thoughtmdp.settings.checks import check_train

    check_derived_keys(config)
    check_train(config)


def check_derived_keys(config: TrainConfig) -> None:
    """Refuse a derived key set to anything but its default or its derived value.

    A resolved config (as saved in a run folder) passes: its derived keys hold the values
    they are derived to.

    Raises:
        ConfigError: Naming the key, and the key to set instead.
    """
    given = to_dict(config)
    default = {"learner": to_dict(embedded_learner()), "actor": to_dict(embedded_actor())}
    derived = to_dict(_derive(config)) if config.run_dir is not None else default
    for key, source in DERIVED.items():
        if _get(given, key) not in (_get(default, key), _get(derived, key)):
            raise ConfigError(
                f"{key} is set by thoughtmdp train (from {source}); set {source} instead"
            )


def resolve(config: TrainConfig, run_dir: Path, bind: str | None = None) -> TrainConfig:
    """The config with its run folder and every derived key filled in.

    Args:
        config: A validated train config.
        run_dir: The run folder.
        bind: The learner's address (default: ``learner.bind``).

    Returns:
        The resolved config; :func:`learner_config` and :func:`actor_config` read from it.
    """
    learner = config.learner if bind is None else replace(config.learner, bind=bind)
    return _derive(replace(config, run_dir=run_dir, learner=learner))


def _derive(config: TrainConfig) -> TrainConfig:
    assert config.run_dir is not None
    model = config.model or str(model_folder(config.warmstart))
    loss = replace(config.learner.loss, temperature=config.actor.sampling.temperature)
    learner = replace(config.learner, model=model, run_dir=config.run_dir, loss=loss)
    actor = config.actor
    task_options = dict(actor.task_options)
    if config.embedded and actor.task == config.warmstart.task:
        task_options = {**config.warmstart.task_options(), **task_options}
    engine_options = {"dtype": learner.dtype, **actor.engine_options}
    actor = replace(
        actor,
        model=model,
        learner=learner.bind,
        num_shards=config.actors,
        lora_rank=learner.lora.rank,
        adapter_root=config.run_dir / "actors",
        task_options=task_options,
        engine_options=engine_options,
    )
    return replace(config, learner=learner, actor=actor)


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<UTC date>-<time to the millisecond>-<4 random hex digits>-<method>``.

    Runs started in the same folder at the same moment still get folders of their own.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S.%f")[:-3]
    return Path("runs") / f"{stamp}-{secrets.token_hex(2)}-{method_name(config)}"


def learner_config(resolved: TrainConfig) -> LearnerConfig:
    """The learner's settings of a resolved run."""
    return resolved.learner


def actor_config(resolved: TrainConfig, shard: int) -> ActorConfig:
    """The settings of actor ``shard`` of a resolved run."""
    return replace(resolved.actor, name=f"actor-{shard}", shard=shard)


def method_name(config: TrainConfig) -> str:
    """A short name of the run's episode shape and reset policy, e.g. ``1x4-self``."""
    episode = config.actor.episode.resolve()
    if episode.num_resets == 0:
        return f"grpo{episode.base_group_size}"
    shape = f"{episode.num_resets}x{episode.suffix_group_size}"
    return f"{shape}-{episode.reset_policy}"


def _get(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data
