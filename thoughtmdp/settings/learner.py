"""Typed settings of the learner (no torch here, so the CLI validates them before importing it).

Load them like every other config: ``settings.load(LearnerConfig, path, ["optim.lr=1e-5"])``.
Defaults follow the paper's Table 5: LoRA r=64, alpha=64; AdamW lr 5e-5 constant, betas
(0.9, 0.999), weight decay 0.01, grad-norm clip 1.0; 32 prompts a step in mini-batches of 8.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.convert import to_dict
from thoughtmdp.settings.deepspeed import DeepSpeedSettings
from thoughtmdp.transport.security import CurveServer

Aggregation = Literal["seq-mean", "token-mean", "dr-grpo"]
Schedule = Literal["constant", "linear", "cosine"]
Tracker = Literal["tensorboard", "wandb", "mlflow", "trackio"]
TRACKERS: tuple[Tracker, ...] = ("tensorboard", "wandb", "mlflow", "trackio")
# Trackers whose package comes with an extra of the same name (TensorBoard is in the base
# install's torch, and without its package the learner only warns).
TRACKER_EXTRAS = ("wandb", "mlflow", "trackio")
# Changing these between a checkpoint and its resume would load the wrong weights.
RESUME_KEYS = ("model", "lora", "dtype")
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA adapter; only its parameters train, the base model stays frozen.

    Attributes:
        rank: LoRA rank r.
        alpha: LoRA scaling alpha (the update is scaled by alpha / r).
        dropout: Dropout on the adapter's input.
        target_modules: Names of the linear layers that get an adapter (default: every
            attention and MLP projection of Qwen2/Llama-style models).
    """

    rank: int = 64  # r
    alpha: int = 64
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ALL_PROJECTIONS


@dataclass(frozen=True)
class OptimSettings:
    """AdamW and its learning-rate schedule (constant by default, as in the paper).

    Attributes:
        lr: Peak learning rate.
        schedule: ``constant``, or ``linear``/``cosine`` decay from ``lr`` to
            ``final_lr_ratio * lr`` at the last step of the run (needs ``max_steps``).
        warmup_steps: Optimiser steps of linear warm-up from ``lr / warmup_steps`` to ``lr``.
        final_lr_ratio: Where a decaying schedule ends, as a fraction of ``lr``.
        betas: Adam's (beta1, beta2).
        weight_decay: Decoupled weight decay of the adapter parameters.
        eps: Adam's epsilon.
        max_grad_norm: Clip the global L2 norm of the gradient to this value.
    """

    lr: float = 5e-5
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    final_lr_ratio: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class LossSettings:
    """The policy-gradient loss; the defaults are the paper's (no clipping, no KL).

    Attributes:
        aggregation: ``seq-mean`` (mean over a rollout's active tokens, then over rollouts),
            ``token-mean`` (over all active tokens of the mini-batch) or ``dr-grpo`` (token sums
            divided by a constant, ``dr_grpo_tokens`` per rollout).
        dr_grpo_tokens: The constant normaliser of ``dr-grpo`` (the paper's max response length).
        clip_eps: PPO ratio clipping against the behaviour log-probabilities (``None``: off).
        is_cap: Truncated importance weight ``min(pi/mu, C)`` on every token (``None``: off).
        temperature: The learner's log-probabilities are ``log_softmax(logits / temperature)``;
            set it to the actors' sampling temperature so that ``pi`` is the distribution
            the tokens were drawn from. Top-p truncation is not reproduced here.
        kl_coef: Weight ``beta`` of a per-token k3 penalty ``KL(pi || pi_ref)`` towards the
            base model (the adapter switched off), added to the loss on the trained tokens
            and aggregated as the policy loss (0: off, no reference forward pass; the paper's).
    """

    aggregation: Aggregation = "seq-mean"
    dr_grpo_tokens: int = 4096
    clip_eps: float | None = None
    is_cap: float | None = None  # C
    temperature: float = 0.7
    kl_coef: float = 0.0  # beta


@dataclass(frozen=True)
class TrackingSettings:
    """Where the experiment trackers of ``report_to`` file the run.

    Attributes:
        project: The W&B project, MLflow experiment and trackio project of the run.
        run_name: The run's name in the trackers (``None``: the run folder's name).
        wandb_mode: ``online``, ``offline`` or ``disabled`` (``None``: ``WANDB_MODE``,
            else W&B's default, online).
        wandb_entity: The W&B user or team (``None``: ``WANDB_ENTITY`` or your default).
        mlflow_tracking_uri: The MLflow tracking server or store, e.g. ``http://host:5000``
            or ``file:/path/mlruns`` (``None``: ``MLFLOW_TRACKING_URI``, else MLflow's
            default, ``mlflow.db`` in the working folder).
    """

    project: str = "thoughtmdp"
    run_name: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    wandb_entity: str | None = None
    mlflow_tracking_uri: str | None = None


@dataclass(frozen=True)
class LearnerConfig:
    """Everything the learner process needs.

    Attributes:
        model: Path of the Hugging Face causal LM (base weights) to put the adapter on.
        run_dir: Output folder: ``metrics.jsonl``, ``tensorboard/``, ``adapters/v*/``,
            ``checkpoints/step-*/`` and the resolved ``config.json``.
        bind: Address the learner binds for actors (``--bind``).
        allow_remote: Allow binding an address reachable from other hosts.
        curve_secret: The learner's secret CURVE certificate
            (``zmq.auth.create_certificates``); with ``curve_authorized``, the socket
            encrypts and admits only the actors whose public certificates are there.
        curve_authorized: Folder of the public certificates of the actors allowed in.
        window: Episodes each actor may have queued or in flight (credits).
        prompts_per_step: Episodes (prompts) per learner step; one adapter version each.
        prompts_per_minibatch: Episodes per optimiser step within a learner step.
        rollouts_per_microbatch: Rollouts per forward/backward pass (memory bound only; the
            loss is the same for any value).
        shared_prefix: Run each group's shared prefix once and its rollouts on top of it.
        gradient_checkpointing: Recompute each decoder layer's activations in backward
            (PyTorch's non-reentrant checkpointing) instead of keeping them: memory for time.
        max_lag: Episodes whose oldest thought is more than this many versions behind the
            learner are stale (``None``: never).
        stale: What to do with a stale episode: ``skip`` it, or ``reweight`` it with the
            truncated importance weights of ``loss.is_cap``.
        max_steps: Stop after this many learner steps in all (``None``: run until stopped).
        checkpoint_every: Steps between checkpoints (0: never).
        signal_map_every: Steps between logged per-thought gradient-signal maps of one
            episode (``signal_maps.jsonl``; 0: never).
        keep_checkpoints: Complete checkpoints kept on disk (older ones are deleted).
        resume: Continue from the latest complete checkpoint in ``run_dir``.
        publish_inline: Send the adapter files inside the notice (actors without a shared
            file system) instead of their path.
        dtype: The precision policy. ``bfloat16``: the base model is held and computes in
            bf16, the adapter keeps fp32 master weights and computes in bf16 (autocast in
            one process, DeepSpeed's bf16 mode over several, gradients accumulated in
            fp32), TF32 matmuls on CUDA, and published adapters are bf16, the serving
            dtype; checkpoints keep fp32. ``float32``: everything in fp32.
        device: ``auto`` (the accelerator if any, else CPU), ``cpu`` or ``cuda``.
        seed: Seed of the learner's random number generators (LoRA init and dropout).
        lora: The adapter.
        optim: The optimiser.
        loss: The loss.
        deepspeed: DeepSpeed, when the learner runs as several processes.
        num_processes: Ranks ``thoughtmdp train`` starts the learner as, under the
            DeepSpeed launcher when more than 1 (then ``deepspeed.zero_stage`` or
            ``deepspeed.config_file`` is needed). A learner started by hand ignores it.
        report_to: Experiment trackers that get every step's metrics besides
            ``metrics.jsonl``: any of ``tensorboard``, ``wandb``, ``mlflow``, ``trackio``
            (``[]``: none). W&B, MLflow and trackio need their extra, e.g.
            ``pip install "thoughtmdp[wandb]"``.
        tracking: Project, run name and tracker-specific options of ``report_to``.
    """

    model: str = ""
    run_dir: Path = Path("runs/learner")
    bind: str = "tcp://127.0.0.1:5555"
    allow_remote: bool = False
    curve_secret: Path | None = None
    curve_authorized: Path | None = None
    window: int = 4
    prompts_per_step: int = 32
    prompts_per_minibatch: int = 8
    rollouts_per_microbatch: int = 8
    shared_prefix: bool = False
    gradient_checkpointing: bool = False
    max_lag: int | None = None
    stale: Literal["skip", "reweight"] = "skip"
    max_steps: int | None = None
    checkpoint_every: int = 10
    signal_map_every: int = 10
    keep_checkpoints: int = 2
    resume: bool = False
    publish_inline: bool = False
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    deepspeed: DeepSpeedSettings = field(default_factory=DeepSpeedSettings)
    num_processes: int = 1
    report_to: tuple[Tracker, ...] = ("tensorboard",)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)

    def __post_init__(self) -> None:
        _check_positive(self, ("window", "prompts_per_step", "prompts_per_minibatch"))
        _check_positive(self, ("rollouts_per_microbatch", "keep_checkpoints"))
        _check_positive(self.lora, ("rank", "alpha"), "lora.")
        _check_positive(self.optim, ("lr", "eps", "max_grad_norm"), "optim.")
        _check_counts(self)
        _check_positive(self.loss, ("temperature", "dr_grpo_tokens"), "loss.")
        _check_positive(self.deepspeed, ("collective_timeout_s", "episode_timeout_s"), "deepspeed.")
        if not self.loss.kl_coef >= 0:
            raise ConfigError(f"loss.kl_coef: expected 0 or more, got {self.loss.kl_coef!r}")
        if self.prompts_per_step % self.prompts_per_minibatch:
            raise ConfigError(
                f"prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                f"prompts_per_minibatch ({self.prompts_per_minibatch})"
            )
        if self.loss.clip_eps is not None and self.loss.is_cap is not None:
            raise ConfigError("set at most one of loss.clip_eps and loss.is_cap")
        if self.stale == "reweight" and self.loss.is_cap is None:
            raise ConfigError("stale=reweight needs loss.is_cap (the truncation C), e.g. 2.0")
        if (self.curve_secret is None) != (self.curve_authorized is None):
            raise ConfigError("set both curve_secret and curve_authorized, or neither")
        _check_schedule(self)
        _check_report_to(self.report_to)
        stage = self.deepspeed.zero_stage
        if stage is not None and stage not in (0, 1, 2, 3):
            raise ConfigError(f"deepspeed.zero_stage: expected 0, 1, 2 or 3, got {stage}")
        if stage == 0 and self.dtype == "bfloat16":
            raise ConfigError(NO_MASTER_WEIGHTS)
        _check_processes(self)

    def curve(self) -> CurveServer | None:
        """The CURVE keys of the learner's socket, if set."""
        if self.curve_secret is None or self.curve_authorized is None:
            return None
        return CurveServer(self.curve_secret, self.curve_authorized)


NO_MASTER_WEIGHTS = (
    "deepspeed.zero_stage=0 with dtype=bfloat16 would keep the adapter, its gradients and "
    "AdamW in bf16 (DeepSpeed has no fp32 master weights without ZeRO); use zero_stage 1, 2 "
    "or 3, or dtype=float32"
)


def _check_processes(config: LearnerConfig) -> None:
    if config.num_processes < 1:
        raise ConfigError(f"num_processes: expected 1 or more, got {config.num_processes}")
    if config.num_processes > 1 and not config.deepspeed.enabled:
        raise ConfigError(
            f"num_processes={config.num_processes} needs DeepSpeed: set deepspeed.zero_stage "
            "(0-3) or deepspeed.config_file"
        )


def _check_counts(config: LearnerConfig) -> None:
    if config.max_steps is not None and config.max_steps < 1:
        raise ConfigError(
            f"max_steps: expected 1 or more (or null: run until stopped), got {config.max_steps}"
        )
    for name in ("checkpoint_every", "signal_map_every"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name}: expected 0 (never) or more, got {getattr(config, name)}")
    if config.max_lag is not None and config.max_lag < 0:
        raise ConfigError(f"max_lag: expected 0 or more (or null), got {config.max_lag}")
    if config.optim.weight_decay < 0:
        raise ConfigError(
            f"optim.weight_decay: expected 0 or more, got {config.optim.weight_decay}"
        )
    if not all(0 <= beta < 1 for beta in config.optim.betas):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {config.optim.betas}")
    if not 0 <= config.lora.dropout < 1:
        raise ConfigError(f"lora.dropout: expected 0 to 1 (excluded), got {config.lora.dropout}")
    for name in ("clip_eps", "is_cap"):
        value = getattr(config.loss, name)
        if value is not None and not value > 0:
            raise ConfigError(f"loss.{name}: expected a positive number or null, got {value}")


def _check_schedule(config: LearnerConfig) -> None:
    optim = config.optim
    if optim.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps: expected 0 or more, got {optim.warmup_steps}")
    if not 0.0 <= optim.final_lr_ratio <= 1.0:
        raise ConfigError(f"optim.final_lr_ratio: expected 0 to 1, got {optim.final_lr_ratio}")
    if optim.schedule != "constant" and config.max_steps is None:
        raise ConfigError(
            f"optim.schedule={optim.schedule} decays over the run: set max_steps as well"
        )


def _check_report_to(report_to: Any) -> None:
    allowed = ", ".join(TRACKERS)
    if isinstance(report_to, str) or not isinstance(report_to, tuple | list):
        raise ConfigError(f"report_to: expected a list of {allowed}; got {report_to!r}")
    for name in report_to:
        if name not in TRACKERS:
            raise ConfigError(f"report_to: expected a list of {allowed}; got {name!r}")
    if len(set(report_to)) != len(report_to):
        raise ConfigError(f"report_to: names a tracker twice: {list(report_to)}")


def check_trackers(config: LearnerConfig) -> None:
    """Check that the package of every tracker in ``report_to`` is installed.

    Raises:
        ConfigError: Naming the tracker and the extra that installs it.
    """
    for name in config.report_to:
        if name in TRACKER_EXTRAS and importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"report_to: {name} is not installed; install it with: "
                f'pip install "thoughtmdp[{name}]"'
            )


def _check_positive(section: Any, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        value = getattr(section, name)
        if not value > 0:
            raise ConfigError(f"{prefix}{name}: expected a positive number, got {value!r}")


def check_ready(config: LearnerConfig) -> None:
    """Checks that need the file system (run before starting the learner).

    Raises:
        ConfigError: Without a model path, with a missing DeepSpeed config file, or with a
            tracker in ``report_to`` whose package is not installed.
    """
    if not config.model:
        raise ConfigError("model: set the path of the base model, e.g. model=/models/Qwen2.5")
    file = config.deepspeed.config_file
    if file is not None and not Path(file).is_file():
        raise ConfigError(f"deepspeed.config_file: {file} does not exist")
    check_trackers(config)


def resume_mismatches(saved: dict[str, Any], config: LearnerConfig) -> list[str]:
    """Keys whose value must not change across a resume but did (dotted names).

    Args:
        saved: The config saved with the checkpoint (``to_dict`` form).
        config: The config of the resuming run.

    Returns:
        The differing keys, sorted.
    """
    current = to_dict(config)
    return sorted(key for key in RESUME_KEYS if saved.get(key) != current.get(key))
