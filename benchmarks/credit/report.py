"""The learning benchmark's numbers, goals and plots, from the runs that have finished."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from report_files import save_figure

from credit.stats import (
    AXES,
    bootstrap,
    focus_gap,
    gap_at_equal,
    mean_curve,
    paired_final_gap,
    reach,
    rollout_ratio,
    t_interval,
)

Runs = dict[str, list[dict[str, Any]]]
GOALS = {"oracle": 0.5, "srpo": 0.7}
"""Largest share of GRPO's rollouts each method may need to reach GRPO's final pass rate."""


def method_rows(runs: Runs) -> dict[str, dict[str, Any]]:
    """Per method: final sampled pass@1 and greedy with intervals over seeds, and its costs."""
    rows = {}
    for name, records in runs.items():
        final, low, high = t_interval([r["curve"][-1]["sampled"] for r in records])
        greedy = t_interval([r["curve"][-1]["greedy"] for r in records])
        resets = {
            key: _mean([r["resets"][key] for r in records if r["resets"].get(key) is not None])
            for key in records[0]["resets"]
        }
        rows[name] = {
            "seeds": len(records),
            "start": records[0]["curve"][0]["sampled"],
            "final": final,
            "final_low": low,
            "final_high": high,
            "final_se": _mean([r["curve"][-1]["sampled_se"] for r in records]),
            "greedy_final": greedy[0],
            **{axis: _mean([r["curve"][-1][axis] for r in records]) for axis in AXES},
            "minutes": _mean([r["minutes"] for r in records]),
            "resets": resets,
            "focus": focus_row(records, runs.get("grpo", [])),
        }
    return rows


def focus_row(records: list[dict[str, Any]], grpo: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The hard step's pass rate from a correct prefix: start, final, paired gap to GRPO."""
    measured = [r["focus"] for r in records if "focus" in r]
    if not measured:
        return None
    final, low, high = t_interval([f["final"]["pass_rate"] for f in measured])
    return {
        "seeds": len(measured),
        "start": measured[0]["start"]["pass_rate"],
        "final": final,
        "final_low": low,
        "final_high": high,
        "se": _mean([f["final"]["se"] for f in measured]),
        "gap_to_grpo": focus_gap(records, grpo),
    }


def goals(runs: Runs) -> list[dict[str, Any]]:
    """Each goal of the main comparison: its measured value, interval and verdict.

    A verdict needs an interval, so a goal whose methods share fewer than 2 seeds is open
    (``None``).
    """
    out = []
    for method, bound in GOALS.items():
        if method in runs and "grpo" in runs:
            seeds = _shared(runs, method, "grpo")
            value, low, high = bootstrap(
                {"grpo": runs["grpo"], method: runs[method]}, rollout_ratio(method)
            )
            out.append(
                _goal(
                    f"{method} reaches GRPO's final pass rate with <= {bound}x its rollouts",
                    value,
                    low,
                    high,
                    value <= bound and high < 1,
                    seeds,
                    ratio=True,
                )
            )
    for better, worse in (("oracle", "srpo"), ("srpo", "rrpo")):
        if better in runs and worse in runs:
            gap = paired_final_gap(runs[better], runs[worse])
            out.append(
                _goal(
                    f"{better} >= {worse} at the end of the budget (pass@1 gap)",
                    gap["gap"],
                    gap["low"],
                    gap["high"],
                    _sign(gap),
                    gap["seeds"],
                )
            )
    if "srpo" in runs and "grpo" in runs:
        gap = gap_at_equal(runs["srpo"], runs["grpo"], "tokens")
        out.append(
            _goal(
                "SRPO not behind GRPO at equal generated tokens (pass@1 gap)",
                gap["gap"],
                gap["low"],
                gap["high"],
                _sign(gap),
                gap["seeds"],
            )
        )
    return out


def _sign(gap: dict[str, float]) -> bool | str:
    """Met when the interval lies at or above 0, missed when below, else unresolved."""
    if gap["low"] >= 0:
        return True
    return False if gap["high"] < 0 else "unresolved"


def _shared(runs: Runs, a: str, b: str) -> int:
    return min(len(runs[a]), len(runs[b]))


def _goal(
    name: str,
    value: float,
    low: float,
    high: float,
    met: bool | str,
    seeds: int,
    ratio: bool = False,
) -> dict[str, Any]:
    verdict = met if seeds >= 2 else None
    return {"goal": name, "value": value, "low": low, "high": high, "met": verdict, "ratio": ratio}


def knob_rows(by_knob: dict[int, Runs], probes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per knob value: ``p``, and each method's rollouts to GRPO's final pass rate there."""
    rows = []
    for knob, runs in sorted(by_knob.items()):
        if "grpo" not in runs:
            continue
        target = mean_curve(runs["grpo"])[-1]["sampled"]
        row: dict[str, Any] = {
            "hard_step": knob,
            "p": probes.get(knob, {}).get("reach_focus_clean_rate"),
            "target": target,
        }
        for name, records in runs.items():
            value, low, high = bootstrap({"grpo": runs["grpo"], name: records}, rollout_ratio(name))
            row[name] = {
                "rollouts": reach(mean_curve(records), target),
                "ratio": value,
                "low": low,
                "high": high,
            }
        rows.append(row)
    return rows


def lr_rows(runs: Runs) -> list[dict[str, Any]]:
    """Final pass@1 of each method at each learning rate (runs keyed ``method@lr``)."""
    return [
        {
            "run": key,
            **dict(
                zip(
                    ("final", "low", "high"),
                    t_interval([r["curve"][-1]["sampled"] for r in records]),
                    strict=True,
                )
            ),
        }
        for key, records in sorted(runs.items())
    ]


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def plot_curves(runs: Runs, path: Path) -> None:
    """Sampled pass@1 against rollouts, generated tokens and seconds: mean and 95 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for (name, records), color in zip(runs.items(), plt.cm.tab10.colors, strict=False):
        curve = mean_curve(records)
        for ax, axis in zip(axes, AXES, strict=True):
            xs = [p[axis] for p in curve]
            ax.plot(xs, [p["sampled"] for p in curve], color=color, marker="o", label=name)
            if len(records) > 1:
                lows, highs = [p["low"] for p in curve], [p["high"] for p in curve]
                ax.fill_between(xs, lows, highs, color=color, alpha=0.15)
    labels = ("rollouts generated", "generated tokens (localiser included)", "training seconds")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xlabel(label)
        ax.set_ylabel("held-out sampled pass@1")
        ax.grid(True, alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_knob(rows: list[dict[str, Any]], path: Path) -> None:
    """Rollouts each method needs to reach GRPO's final pass rate, against ``p``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    methods = sorted({k for r in rows for k in r if isinstance(r[k], dict)})
    for name, color in zip(methods, plt.cm.tab10.colors, strict=False):
        points = [(r["p"], r[name]) for r in rows if name in r and r["p"] is not None]
        xs = [p for p, _ in points]
        ys = [v["ratio"] for _, v in points]
        errors = [
            [max(v["ratio"] - v["low"], 0) for _, v in points],
            [max(v["high"] - v["ratio"], 0) if math.isfinite(v["high"]) else 0 for _, v in points],
        ]
        ax.errorbar(xs, ys, yerr=errors, color=color, marker="o", capsize=3, label=name)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("p: share of chains reaching the hard step with a clean prefix")
    ax.set_ylabel("rollouts to GRPO's final pass@1 / GRPO's rollouts")
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_figure(fig, path)
