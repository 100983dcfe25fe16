"""Typed settings of the actor (no torch here, so the CLI validates them before importing it).

Load them like every other config: ``settings.load(ActorConfig, path, ["task=math"])``.
Sampling defaults follow the paper (temperature 0.7, top-p 0.95); episodes default to the
``1x4`` shape with self-localised resets (``srpo``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thoughtmdp.backend import SamplingParams
from thoughtmdp.episodes.presets import EpisodeSettings
from thoughtmdp.errors import ConfigError
from thoughtmdp.mdp.chat import AUTO, NONE, read_template
from thoughtmdp.mdp.task import TASKS
from thoughtmdp.transport.security import CurveClient

Backend = Literal["auto", "vllm", "transformers"]


@dataclass(frozen=True)
class SamplingSettings:
    """How each thought is sampled (per-request seeds are set by the episode builder).

    Attributes:
        temperature: Softmax temperature (the learner's ``loss.temperature`` should match).
        top_p: Nucleus mass kept.
        max_tokens: Most tokens sampled for one thought.
    """

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256

    def params(self) -> SamplingParams:
        """These settings as backend :class:`~thoughtmdp.backend.SamplingParams`."""
        return SamplingParams(self.temperature, self.top_p, self.max_tokens)


@dataclass(frozen=True)
class ActorConfig:
    """Everything the actor process needs.

    Attributes:
        learner: The learner's address (``--learner``), e.g. ``tcp://127.0.0.1:5555``.
        name: This actor's name, unique among actors; a restarted actor keeps its name
            (empty: ``actor-<shard>``).
        model: Path of the Hugging Face causal LM (base weights); its tokenizer is used too.
        backend: ``vllm``, ``transformers``, or ``auto`` (vLLM when it is installed).
        engine_options: ``vllm.AsyncEngineArgs`` keywords over our defaults, e.g.
            ``engine_options.tensor_parallel_size=4`` or ``engine_options.dtype=float32``.
        device: Torch device of the transformers backend.
        max_batch_size: Most requests the transformers backend decodes together.
        lora_rank: Largest LoRA rank the vLLM engine must hold (the learner's ``lora.rank``).
        task: Registered task name (``thoughtmdp tasks`` lists them).
        task_options: Keyword arguments of the task, e.g. ``task_options.num_steps=4``.
        split: Split the problems are drawn from.
        max_thoughts: Most thoughts in a chain.
        max_total_tokens: Most response tokens in a chain, prompt excluded (``None``: no cap);
            the thought that reaches it is cut to fit, so no chain exceeds it.
        max_prompt_tokens: Problems whose rendered prompt is longer are left out of training,
            and the actor logs how many (``None``: keep all).
        chat_template: How the rollout and localiser prompts reach the model: ``auto`` (the
            model's chat template when its tokenizer has one, else raw text), ``none`` (raw
            text) or the path of a Jinja template file, used instead of the tokenizer's. A
            template renders the prompt as the user turn followed by the assistant header,
            so thoughts continue in the assistant turn; evaluations use the same setting.
        episode: How episodes are built: presets, then values set over them, e.g.
            ``episode.presets=[2x4,rrpo]`` or ``episode.num_resets=2``.
        sampling: Sampling of thoughts.
        shard: This actor's shard of the problems (0-based).
        num_shards: Shards the problems are split into (usually the number of actors).
        in_flight: Episodes built concurrently.
        max_lag: Most versions the loaded adapter may trail the learner's latest before the
            actor stops starting episodes.
        batch_barrier: Synchronous mode: build ``in_flight`` episodes, wait for all of them
            and for a newer adapter, then the next batch (generation and training take
            turns; the learner's ``prompts_per_step`` must be ``in_flight`` times the
            number of actors).
        pin_version: Sample each episode (seed chain, localisation, suffixes) with the
            adapter version it started with; a newer adapter serves only episodes started
            after it loaded, and an old version stays loaded until its last episode ends.
            The reset argument needs the prefix and its suffixes from one policy; ``false``
            lets a long episode switch versions midway.
        seed: Base seed; episode ``k`` samples with ``seed + k``.
        fallback_warn_rate: Log a warning when more than this share of the last 50 reset
            decisions took the reset policy's ``fallback`` (e.g. SRPO localiser answers that
            named no step); 1 never warns.
        max_episodes: Stop after sending this many episodes (``None``: run until stopped).
        adapter_root: Where adapters sent inline are written (``None``: a temporary folder).
        hello_interval: Seconds without credit before saying hello to the learner again.
        curve_secret: The actor's secret CURVE certificate; with ``curve_server_public``,
            the connection to the learner is encrypted and authenticated.
        curve_server_public: The learner's public CURVE certificate.
    """

    learner: str = "tcp://127.0.0.1:5555"
    name: str = ""
    model: str = ""
    backend: Backend = "auto"
    engine_options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    max_batch_size: int = 16
    lora_rank: int = 64
    task: str = "arith_chain"
    task_options: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    max_thoughts: int = 20
    max_total_tokens: int | None = 4096
    max_prompt_tokens: int | None = 2048
    chat_template: str = "auto"
    episode: EpisodeSettings = field(default_factory=EpisodeSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    shard: int = 0
    num_shards: int = 1
    in_flight: int = 8
    max_lag: int = 1
    batch_barrier: bool = False
    pin_version: bool = True
    seed: int = 0
    fallback_warn_rate: float = 0.2
    max_episodes: int | None = None
    adapter_root: Path | None = None
    hello_interval: float = 2.0
    curve_secret: Path | None = None
    curve_server_public: Path | None = None

    def __post_init__(self) -> None:
        positive = ("lora_rank", "max_thoughts", "num_shards", "in_flight", "hello_interval")
        for key in (*positive, "max_batch_size"):
            value = getattr(self, key)
            if not value > 0:
                raise ConfigError(f"{key}: expected a positive number, got {value!r}")
        if not 0 <= self.shard < self.num_shards:
            raise ConfigError(f"shard: expected 0..{self.num_shards - 1}, got {self.shard}")
        if not 0 <= self.fallback_warn_rate <= 1:
            raise ConfigError(f"fallback_warn_rate: expected 0..1, got {self.fallback_warn_rate!r}")
        if self.max_lag < 0:
            raise ConfigError(f"max_lag: expected 0 or more, got {self.max_lag}")
        for key in ("max_total_tokens", "max_prompt_tokens"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}: expected a positive number or null, got {value!r}")
        if self.max_episodes is not None and self.max_episodes < 0:
            raise ConfigError(f"max_episodes: expected 0 or more, got {self.max_episodes}")
        if (self.curve_secret is None) != (self.curve_server_public is None):
            raise ConfigError("set both curve_secret and curve_server_public, or neither")
        if self.task not in TASKS:
            raise ConfigError(f"task: unknown task {self.task!r}; known: {TASKS.names()}")
        try:
            self.sampling.params()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def actor_name(self) -> str:
        """The name the actor uses on the wire."""
        return self.name or f"actor-{self.shard}"

    def curve(self) -> CurveClient | None:
        """The CURVE keys of the connection to the learner, if set."""
        if self.curve_secret is None or self.curve_server_public is None:
            return None
        return CurveClient(self.curve_secret, self.curve_server_public)


def check_ready(config: ActorConfig) -> None:
    """Checks that need the file system or the installed packages (run before starting).

    Raises:
        ConfigError: Without a model path, with ``backend=vllm`` but no vLLM installed, with
            a ``chat_template`` file that cannot be read, or with task or reset-policy
            options that the task or the policy does not take.
    """
    from thoughtmdp.settings.checks import check_episode, check_task_options

    check_task_options(config.task, config.task_options, "task_options")
    check_episode(config)
    if config.chat_template not in (AUTO, NONE):
        read_template(config.chat_template)
    if not config.model:
        raise ConfigError("model: set the path of the base model, e.g. model=/models/Qwen2.5")
    if config.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            'backend=vllm needs vLLM: pip install "thoughtmdp[gpu]" (or "thoughtmdp[cpu]")'
        )


def resolve_backend(config: ActorConfig) -> Literal["vllm", "transformers"]:
    """The backend ``config.backend`` stands for (``auto``: vLLM when it is importable)."""
    if config.backend != "auto":
        return config.backend
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
