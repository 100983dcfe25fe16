"""The episode setting: the paper's presets, the values set over them, the resolved shape."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from thoughtmdp.episodes.reset_policies import RESET_POLICIES
from thoughtmdp.errors import ConfigError


@dataclass(frozen=True)
class EpisodeConfig:
    """How one prompt's rollouts are built (Algorithm 2, generalised to K resets of M suffixes).

    The resolved shape the :class:`~thoughtmdp.episodes.builder.EpisodeBuilder` reads; make
    one with :func:`episode_config` or :meth:`EpisodeSettings.resolve`.

    Attributes:
        base_group_size: G1, rollouts from the prompt that form the base group.
        num_resets: K, failed seed chains to reset (0 = GRPO).
        suffix_group_size: M, rollouts resampled from each reset prefix.
        reset_policy: Registered name of the reset policy (``none``, ``uniform``, ``self``,
            ``oracle``, ``least_confident`` or a custom one); unused when ``num_resets`` is 0.
        reset_policy_options: Keyword arguments of the reset policy (e.g. ``fallback``,
            ``statistic``). ``fallback`` says what ``self`` and ``oracle`` do with a seed they
            cannot name a step for: ``uniform`` (default: a random reset, as RRPO), ``skip``
            (no reset group) or ``grpo`` (the seed and ``M - 1`` fresh rollouts from the
            prompt join the base group, so the episode keeps its size, as GRPO).
        max_seed_attempts: Most rollouts sampled from the prompt while looking for seeds
            (base group included); without K failures by then, the episode uses what it found.
        normalize_std: Divide advantages by the group's standard deviation (off: Dr. GRPO).

    Raises:
        ConfigError: For an invalid value; the message names the key (``episode.<field>``).
    """

    base_group_size: int = 4  # G1
    num_resets: int = 1  # K
    suffix_group_size: int = 4  # M
    reset_policy: str = "self"
    reset_policy_options: dict[str, Any] = field(default_factory=dict)
    max_seed_attempts: int = 16
    normalize_std: bool = True

    def __post_init__(self) -> None:
        for name, least in (("base_group_size", 0), ("num_resets", 0), ("suffix_group_size", 1)):
            value = getattr(self, name)
            if value < least:
                raise ConfigError(f"{name}: expected {least} or more, got {value}")
        rollouts = self.base_group_size + self.num_resets
        if rollouts == 0:
            raise ConfigError("base_group_size and num_resets are both 0: set one above 0")
        if self.max_seed_attempts < rollouts:
            raise ConfigError(
                "max_seed_attempts: expected base_group_size + num_resets "
                f"({rollouts}) or more, got {self.max_seed_attempts}"
            )
        if self.reset_policy not in RESET_POLICIES:
            raise ConfigError(
                f"reset_policy: unknown reset policy {self.reset_policy!r}; "
                f"known: {RESET_POLICIES.names()}"
            )


PRESETS: dict[str, dict[str, Any]] = {
    # 8 rollouts per prompt in every preset, to match compute as in the paper's comparisons.
    "grpo": {"base_group_size": 8, "num_resets": 0, "reset_policy": "none"},
    "1x4": {},  # the defaults: 4 from the prompt, 4 from one reset
    "2x4": {"base_group_size": 0, "num_resets": 2, "suffix_group_size": 4},
    "1x8": {"base_group_size": 0, "num_resets": 1, "suffix_group_size": 8},
    "rrpo": {"reset_policy": "uniform"},
    "srpo": {"reset_policy": "self"},
    "oracle": {"reset_policy": "oracle"},
    "least_confident": {"reset_policy": "least_confident"},
}
"""Named differences from the defaults; combine them, e.g. ``episode_config("2x4", "rrpo")``."""


def episode_config(*presets: str, **values: Any) -> EpisodeConfig:
    """The :class:`EpisodeConfig` of ``presets`` (a later one wins), with ``values`` over them.

    Args:
        *presets: Names in :data:`PRESETS`.
        **values: :class:`EpisodeConfig` fields; each wins over every preset.

    Raises:
        ConfigError: For an unknown preset or an invalid value (the message names the key).
        TypeError: For a keyword that is no field of :class:`EpisodeConfig`.

    >>> episode_config("2x4", "rrpo").num_resets, episode_config("grpo").reset_policy
    (2, 'none')
    >>> episode_config("grpo", base_group_size=16).base_group_size
    16
    """
    chosen: dict[str, Any] = {}
    for name in presets:
        if name not in PRESETS:
            raise ConfigError(f"presets: unknown preset {name!r}; known: {list(PRESETS)}")
        chosen.update(PRESETS[name])
    return EpisodeConfig(**{**chosen, **values})


@dataclass(frozen=True)
class EpisodeSettings:
    """The actor's ``episode`` setting: presets, and values set over them.

    Which value wins: a field set here (not ``None``), else the last preset that sets it, else
    the default of :class:`EpisodeConfig` (the ``1x4`` shape with ``self`` resets). So
    ``episode.presets=[grpo] episode.base_group_size=16`` is GRPO with 16 rollouts a prompt.
    The settings are checked when built; :meth:`resolve` gives the builder's config.

    Attributes:
        presets: Presets applied in order, each over the ones before: the methods ``grpo``,
            ``rrpo``, ``srpo``, ``oracle``, ``least_confident`` and the shapes ``1x4``,
            ``2x4``, ``1x8`` (e.g. ``[2x4, rrpo]``); every other field that is set wins over
            all presets.
        base_group_size: G1, rollouts from the prompt in the base group (``None``: from the
            presets, else 4).
        num_resets: K, failed seed chains to reset; 0 is GRPO (``None``: from the presets,
            else 1).
        suffix_group_size: M, rollouts from each reset prefix (``None``: from the presets,
            else 4).
        reset_policy: ``none``, ``uniform``, ``self``, ``oracle``, ``least_confident`` or a
            registered policy (``None``: from the presets, else ``self``).
        reset_policy_options: Keyword arguments of the reset policy, e.g.
            ``episode.reset_policy_options.fallback=grpo`` (what ``self`` and ``oracle`` do
            when they name no step: ``uniform``, the default, resets at random as RRPO;
            ``skip`` drops the reset group; ``grpo`` trains the prompt as GRPO with the
            same number of rollouts), the ``self`` localiser's ``temperature``,
            ``max_tokens``, ``template`` and ``check_answer_echo``, or the
            ``least_confident`` ``statistic`` (``mean`` or ``min``).
        max_seed_attempts: Most rollouts sampled from the prompt while looking for seeds,
            base group included (``None``: from the presets, else 16).
        normalize_std: Divide advantages by the group's standard deviation; off is Dr. GRPO
            (``None``: from the presets, else on).
    """

    presets: tuple[str, ...] = ("1x4", "srpo")
    base_group_size: int | None = None  # G1
    num_resets: int | None = None  # K
    suffix_group_size: int | None = None  # M
    reset_policy: str | None = None
    reset_policy_options: dict[str, Any] = field(default_factory=dict)
    max_seed_attempts: int | None = None
    normalize_std: bool | None = None

    def __post_init__(self) -> None:
        self.resolve()

    def resolve(self) -> EpisodeConfig:
        """The episode shape: the presets, then every field set here.

        Raises:
            ConfigError: For an unknown preset or an invalid value (the message names the key).

        >>> config = EpisodeSettings(presets=("1x8", "rrpo"), suffix_group_size=6).resolve()
        >>> config.base_group_size, config.num_resets, config.suffix_group_size, config.reset_policy
        (0, 1, 6, 'uniform')
        """
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "presets"}
        return episode_config(*self.presets, **{k: v for k, v in values.items() if v is not None})
