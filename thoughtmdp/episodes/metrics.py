"""Metrics computed from episodes: pure functions, named as in the metrics table.

``critic/score/mean`` follows verl's name; reset-specific metrics live under ``reset/``.
Rates whose denominator is empty are left out rather than reported as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from thoughtmdp.episodes.reset_policies import FALLBACKS
from thoughtmdp.types import Episode, ResetRecord

PASS_REWARD = 1.0
"""A rollout with at least this reward solved its problem."""


def episode_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """Summary metrics of a batch of episodes.

    Keys: ``critic/score/mean`` (base-group reward), ``reset/count``, ``reset/fallback_rate``
    (episodes without a failed rollout), ``reset/skip_rate`` (seeds without a reset group),
    ``reset/localizer_parse_fail_rate`` (localiser answers that named no valid step),
    ``reset/policy_fallback_rate`` (seeds whose reset policy named no step and fell back),
    ``reset/policy_fallback/<kind>`` (the same by kind: ``uniform``, ``skip``, ``grpo``),
    ``reset/position/mean`` (``h*/H_s``), ``reset/suffix_pass_rate`` (reset-group reward) and,
    when the task has a step oracle, ``reset/exact_match_rate`` (``h*`` equals the oracle),
    ``reset/clean_prefix_rate`` (no wrong thought before ``h*``) and
    ``reset/correction_rate/clean`` and ``/erroneous`` (reset-group reward by prefix kind),
    ``reset/correction_pass_at_m/clean`` and ``/erroneous`` (share of reset groups with at
    least one solved suffix: the paper's Pass@M).
    """
    metrics: dict[str, float] = {}
    base = [
        t.reward for e in episodes for g in e.groups if g.kind == "base" for t in g.trajectories
    ]
    resets = [r for e in episodes for r in e.resets]
    suffix = [
        t.reward for e in episodes for g in e.groups if g.kind == "reset" for t in g.trajectories
    ]
    _put_mean(metrics, "critic/score/mean", base)
    metrics["reset/count"] = float(sum(r.decision.reset_index is not None for r in resets))
    _put_mean(metrics, "reset/fallback_rate", [e.fell_back for e in episodes])
    _put_mean(metrics, "reset/skip_rate", [r.decision.reset_index is None for r in resets])
    asked = [r for r in resets if r.decision.raw_text is not None]
    _put_mean(
        metrics, "reset/localizer_parse_fail_rate", [r.decision.parse_status != "ok" for r in asked]
    )
    _put_mean(
        metrics, "reset/policy_fallback_rate", [r.decision.fallback is not None for r in resets]
    )
    for kind in FALLBACKS:
        _put_mean(
            metrics, f"reset/policy_fallback/{kind}", [r.decision.fallback == kind for r in resets]
        )
    _put_mean(metrics, "reset/position/mean", list(reset_positions(episodes)))
    _put_mean(metrics, "reset/suffix_pass_rate", suffix)
    metrics.update(_oracle_metrics(episodes))
    return metrics


def reset_positions(episodes: Sequence[Episode]) -> NDArray[np.float64]:
    """``h*/H_s`` of every reset, in ``(0, 1]``: the ``reset/position`` histogram's data."""
    return np.array(
        [
            r.decision.reset_index / r.seed_length
            for e in episodes
            for r in e.resets
            if r.decision.reset_index is not None
        ],
        dtype=np.float64,
    )


def is_clean_prefix(record: ResetRecord) -> bool | None:
    """Whether the prefix kept before ``h*`` holds no wrong thought (None without an oracle)."""
    if record.oracle_index is None or record.decision.reset_index is None:
        return None
    return record.decision.reset_index <= record.oracle_index


def _oracle_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    rewards: dict[bool, list[float]] = {True: [], False: []}
    any_pass: dict[bool, list[bool]] = {True: [], False: []}
    matches, cleans = [], []
    for episode in episodes:
        reset_groups = [g for g in episode.groups if g.kind == "reset"]
        used = [r for r in episode.resets if r.decision.reset_index is not None]
        for record, group in zip(used, reset_groups, strict=True):
            clean = is_clean_prefix(record)
            if clean is None:
                continue
            matches.append(record.decision.reset_index == record.oracle_index)
            cleans.append(clean)
            rewards[clean].extend(group.rewards)
            any_pass[clean].append(max(group.rewards) >= PASS_REWARD)
    _put_mean(metrics, "reset/exact_match_rate", matches)
    _put_mean(metrics, "reset/clean_prefix_rate", cleans)
    for clean, kind in ((True, "clean"), (False, "erroneous")):
        _put_mean(metrics, f"reset/correction_rate/{kind}", rewards[clean])
        _put_mean(metrics, f"reset/correction_pass_at_m/{kind}", any_pass[clean])
    return metrics


def _put_mean(metrics: dict[str, float], key: str, values: Sequence[float | bool]) -> None:
    if len(values) > 0:
        metrics[key] = float(np.mean(values))
