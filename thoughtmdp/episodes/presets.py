"""Typed configuration of episode construction, with the paper's presets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from thoughtmdp.errors import ThoughtMDPError


@dataclass(frozen=True)
class EpisodeConfig:
    """How one prompt's rollouts are built (Algorithm 2, generalised to K resets of M suffixes).

    Attributes:
        base_group_size: G1, rollouts from the prompt that form the base group.
        num_resets: K, failed seed chains to reset (0 = GRPO).
        suffix_group_size: M, rollouts resampled from each reset prefix.
        reset_policy: Registered name of the reset policy (``none``, ``uniform``, ``self``,
            ``oracle`` or a custom one); unused when ``num_resets`` is 0.
        reset_policy_options: Keyword arguments of the reset policy (e.g. ``fallback``).
        max_seed_attempts: Most rollouts sampled from the prompt while looking for seeds
            (base group included); without K failures by then, the episode uses what it found.
        normalize_std: Divide advantages by the group's standard deviation (off: Dr. GRPO).
    """

    base_group_size: int = 4  # G1
    num_resets: int = 1  # K
    suffix_group_size: int = 4  # M
    reset_policy: str = "self"
    reset_policy_options: dict[str, Any] = field(default_factory=dict)
    max_seed_attempts: int = 16
    normalize_std: bool = True

    def __post_init__(self) -> None:
        checks = {
            "base_group_size": self.base_group_size >= 0,
            "num_resets": self.num_resets >= 0,
            "suffix_group_size": self.suffix_group_size >= 1,
            "max_seed_attempts": self.max_seed_attempts >= self.base_group_size + self.num_resets,
        }
        for name, ok in checks.items():
            if not ok:
                raise ThoughtMDPError(f"invalid EpisodeConfig.{name} = {getattr(self, name)!r}")
        if self.base_group_size + self.num_resets == 0:
            raise ThoughtMDPError("EpisodeConfig needs base_group_size or num_resets above 0")


PRESETS: dict[str, dict[str, Any]] = {
    # 8 rollouts per prompt in every preset, to match compute as in the paper's comparisons.
    "grpo": {"base_group_size": 8, "num_resets": 0, "reset_policy": "none"},
    "1x4": {},  # the defaults: 4 from the prompt, 4 from one reset
    "2x4": {"base_group_size": 0, "num_resets": 2, "suffix_group_size": 4},
    "1x8": {"base_group_size": 0, "num_resets": 1, "suffix_group_size": 8},
    "rrpo": {"reset_policy": "uniform"},
    "srpo": {"reset_policy": "self"},
    "oracle": {"reset_policy": "oracle"},
}
"""Named differences from the defaults; combine them, e.g. ``episode_config("2x4", "rrpo")``."""


def episode_config(*presets: str, **overrides: Any) -> EpisodeConfig:
    """An :class:`EpisodeConfig` from presets applied in order, then keyword overrides.

    Raises:
        ThoughtMDPError: For an unknown preset or field (the message lists the known ones).

    >>> episode_config("2x4", "rrpo").num_resets, episode_config("grpo").reset_policy
    (2, 'none')
    """
    config = EpisodeConfig()
    known = {f.name for f in fields(EpisodeConfig)}
    for name in presets:
        if name not in PRESETS:
            raise ThoughtMDPError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        config = replace(config, **PRESETS[name])
    unknown = set(overrides) - known
    if unknown:
        raise ThoughtMDPError(
            f"unknown EpisodeConfig field(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    return replace(config, **overrides)
