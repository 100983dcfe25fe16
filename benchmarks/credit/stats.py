"""Reading the learning benchmark's runs, and the statistics it reports.

A run's curve has one point per evaluated adapter version: sampled pass@1 (mean over the
held-out problems of the share of their ``k`` samples that passed) with its standard error,
greedy pass rate, and three budgets spent so far: rollouts generated, tokens generated and
seconds of training. Generated means every chain sampled, trained on or not: the groups'
rollouts, the seed chains a reset starts from, and draws from the prompt that were never used;
tokens also count the localiser's answers. Methods are compared on the same seeds,
paired; intervals are Student-t over seeds, or a bootstrap over seeds for ratios.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thoughtmdp.runs.files import SUMMARY_FILE, read_heldout, read_jsonl, step_axes

AXES = ("rollouts", "tokens", "seconds")
BOOTSTRAP = 2000
RESET_KEYS = {
    "exact_match_rate": "reset/exact_match_rate",
    "clean_prefix_rate": "reset/clean_prefix_rate",
    "correction_clean": "reset/correction_rate/clean",
    "correction_erroneous": "reset/correction_rate/erroneous",
    "suffix_pass_rate": "reset/suffix_pass_rate",
    "signal_reset_to_base": "signal/reset_to_base",
    "fallback_rate": "reset/fallback_rate",
}
"""Per-step metrics averaged over a run (App. 14's gradient-signal ratio among them)."""
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
"""97.5 % quantiles of Student's t with 1..10 degrees of freedom (1.96 beyond)."""


def read_run(run_dir: Path, tokenizer: Any) -> dict[str, Any]:
    """One finished run: its curve, training reward and reset statistics."""
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    seconds_at = {step: seconds for step, (_, seconds) in step_axes(metrics).items()}
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    generated = cumulative_generation(episodes, tokenizer)
    curve = []
    for version, record in sorted(read_heldout(run_dir).items()):
        sampled = record["sampled"]
        rollouts, tokens = generated.get(version, (0.0, 0.0))
        seconds = seconds_at[version]
        curve.append(
            {
                "version": version,
                "rollouts": rollouts,
                "tokens": tokens,
                "seconds": seconds,
                "sampled": sampled["pass_at_1"],
                "sampled_se": sampled["se"],
                "greedy": record["pass_rate"],
            }
        )
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    return {
        "run_dir": str(run_dir),
        "curve": curve,
        "train_reward": [m.get("critic/score/mean") for m in metrics],
        "resets": {
            **{k: _mean_of(metrics, key) for k, key in RESET_KEYS.items()},
            **correction_pass_at_m(episodes),
            "at_hard_step": resets_at(episodes, hard_step(run_dir)),
        },
        "minutes": summary["timings"]["total_s"] / 60,
    }


def correction_pass_at_m(episodes: list[dict[str, Any]]) -> dict[str, float | None]:
    """Share of reset groups with a solved suffix (the paper's Pass@M), by prefix kind.

    >>> resets = [{"clean": True, "suffix_rewards": [0.0, 1.0]}, {"clean": True,
    ...     "suffix_rewards": [0.0, 0.0]}, {"clean": False, "suffix_rewards": [0.0, 0.0]}]
    >>> correction_pass_at_m([{"resets": resets}])
    {'pass_at_m_clean': 0.5, 'pass_at_m_erroneous': 0.0}
    """
    solved: dict[bool, list[bool]] = {True: [], False: []}
    for reset in (r for e in episodes for r in e.get("resets", ())):
        if reset.get("clean") is not None and reset.get("suffix_rewards"):
            solved[reset["clean"]].append(max(reset["suffix_rewards"]) >= 1.0)
    return {
        f"pass_at_m_{kind}": statistics.fmean(solved[clean]) if solved[clean] else None
        for clean, kind in ((True, "clean"), (False, "erroneous"))
    }


def hard_step(run_dir: Path) -> int | None:
    """The position of HardStepChain's hard step in a run (``None`` for other tasks)."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    options = config["actor"].get("task_options") or {}
    return options.get("hard_step")


def resets_at(episodes: list[dict[str, Any]], step: int | None) -> float | None:
    """Share of reset groups that resample from ``step`` (the rest start at an easy step).

    >>> groups = [{"kind": "base", "reset_index": None}, {"kind": "reset", "reset_index": 8}]
    >>> resets_at([{"groups": groups}, {"groups": [{"kind": "reset", "reset_index": 3}]}], 8)
    0.5
    """
    starts = [g["reset_index"] for e in episodes for g in e["groups"] if g["kind"] == "reset"]
    if step is None or not starts:
        return None
    return sum(s == step for s in starts) / len(starts)


def cumulative_generation(
    episodes: list[dict[str, Any]], tokenizer: Any
) -> dict[int, tuple[float, float]]:
    """Rollouts and tokens generated up to each learner step (step 0: nothing)."""
    per_step: dict[int, tuple[float, float]] = {}
    for episode in episodes:
        rollouts, tokens = episode_generation(episode, tokenizer)
        before = per_step.get(episode["step"], (0.0, 0.0))
        per_step[episode["step"]] = (before[0] + rollouts, before[1] + tokens)
    out, total = {0: (0.0, 0.0)}, (0.0, 0.0)
    for step in sorted(per_step):
        total = (total[0] + per_step[step][0], total[1] + per_step[step][1])
        out[step] = total
    return out


def episode_generation(episode: dict[str, Any], tokenizer: Any) -> tuple[int, int]:
    """Chains and tokens one episode sampled.

    Its groups, its seed chains, its unused draws and (tokens only) its localiser answers.
    """
    groups = [t for g in episode["groups"] for t in g["tokens"]]
    seeds = [r.get("seed_tokens", 0) for r in episode["resets"]]
    unused = episode.get("unused_tokens", [])
    answers = [r.get("answer") or "" for r in episode["resets"]]
    asked = sum(len(tokenizer.encode(a, add_special_tokens=False)) for a in answers)
    rollouts = len(groups) + len(seeds) + len(unused)
    return rollouts, sum(groups) + sum(seeds) + sum(unused) + asked


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None and math.isfinite(r[key])]
    return statistics.fmean(values) if values else None


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of ``values`` (one per seed).

    >>> [round(x, 3) for x in t_interval([1.0, 2.0, 3.0])]
    [2.0, -0.484, 4.484]
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    df = len(values) - 1
    t = T_975[df - 1] if df <= len(T_975) else 1.96
    half = t * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def mean_curve(runs: list[dict[str, Any]], key: str = "sampled") -> list[dict[str, float]]:
    """Per evaluated version: every axis averaged over seeds, and ``key`` with its t-interval."""
    points = []
    for k in range(min(len(r["curve"]) for r in runs)):
        at = [r["curve"][k] for r in runs]
        mean, low, high = t_interval([p[key] for p in at])
        points.append(
            {
                **{axis: statistics.fmean(p[axis] for p in at) for axis in AXES},
                "version": at[0]["version"],
                key: mean,
                "low": low,
                "high": high,
                "se": statistics.fmean(p[f"{key}_se"] for p in at) if key == "sampled" else None,
            }
        )
    return points


def reach(points: list[dict[str, float]], target: float, axis: str = "rollouts") -> float:
    """Where on ``axis`` a curve first reaches ``target`` (linear between points, else inf).

    >>> reach([{"rollouts": 0, "sampled": 0.25}, {"rollouts": 100, "sampled": 0.75}], 0.5)
    50.0
    """
    if points and points[0]["sampled"] >= target:
        return float(points[0][axis])
    for before, after in itertools.pairwise(points):
        if after["sampled"] >= target > before["sampled"]:
            share = (target - before["sampled"]) / (after["sampled"] - before["sampled"])
            return float(before[axis] + share * (after[axis] - before[axis]))
    return math.inf


def at_budget(points: list[dict[str, float]], budget: float, axis: str) -> float:
    """The curve's pass rate at ``budget`` on ``axis`` (linear between points, clipped)."""
    xs = [p[axis] for p in points]
    return float(np.interp(budget, xs, [p["sampled"] for p in points]))


def bootstrap(
    runs: dict[str, list[dict[str, Any]]],
    statistic: Callable[[dict[str, list[dict[str, Any]]]], float],
    seed: int = 0,
) -> tuple[float, float, float]:
    """A statistic of several methods' runs, and its 95 % percentile interval over seeds.

    Seeds are resampled jointly (run ``i`` of every method is seed ``i``), so a comparison
    stays paired. Infinite values (a target never reached) sort above every finite one.
    """
    count = min(len(r) for r in runs.values())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        picks = rng.integers(count, size=count)
        draws.append(statistic({m: [r[i] for i in picks] for m, r in runs.items()}))
    low, high = np.percentile(np.asarray(draws), [2.5, 97.5], method="lower")
    return statistic({m: r[:count] for m, r in runs.items()}), float(low), float(high)


def rollout_ratio(method: str) -> Callable[[dict[str, list[dict[str, Any]]]], float]:
    """Rollouts ``method`` needs to reach GRPO's final sampled pass@1, over GRPO's rollouts."""

    def statistic(runs: dict[str, list[dict[str, Any]]]) -> float:
        grpo = mean_curve(runs["grpo"])
        return reach(mean_curve(runs[method]), grpo[-1]["sampled"]) / grpo[-1]["rollouts"]

    return statistic


def paired_final_gap(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, float]:
    """Final sampled pass@1 of ``a`` minus ``b`` on the seeds both ran, with its t-interval."""
    gaps = [x["curve"][-1]["sampled"] - y["curve"][-1]["sampled"] for x, y in _paired(a, b)]
    mean, low, high = t_interval(gaps)
    return {"gap": mean, "low": low, "high": high, "seeds": len(gaps)}


def focus_gap(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, float] | None:
    """Final hard-step pass rate from a correct prefix, ``a`` minus ``b``, paired by seed."""
    pairs = [(x, y) for x, y in _paired(a, b) if "focus" in x and "focus" in y]
    if not pairs:
        return None
    gaps = [x["focus"]["final"]["pass_rate"] - y["focus"]["final"]["pass_rate"] for x, y in pairs]
    mean, low, high = t_interval(gaps)
    return {"gap": mean, "low": low, "high": high, "seeds": len(gaps)}


def gap_at_equal(a: list[dict[str, Any]], b: list[dict[str, Any]], axis: str) -> dict[str, float]:
    """``a`` minus ``b`` at the largest budget on ``axis`` both runs of a seed reached."""
    gaps = []
    for x, y in _paired(a, b):
        budget = min(x["curve"][-1][axis], y["curve"][-1][axis])
        gaps.append(at_budget(x["curve"], budget, axis) - at_budget(y["curve"], budget, axis))
    mean, low, high = t_interval(gaps)
    return {"gap": mean, "low": low, "high": high, "seeds": len(gaps)}


def _paired(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """Runs of the same seeds (run ``i`` is seed ``i``; a method may have run fewer)."""
    count = min(len(a), len(b))
    return list(zip(a[:count], b[:count], strict=True))
