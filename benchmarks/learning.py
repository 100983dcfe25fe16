"""Learning: GRPO vs RRPO (uniform resets) vs SRPO (self-localised) vs oracle resets.

Every method trains the embedded policy (the warm-started tiny ArithChain model) with
``thoughtmdp train`` for the same number of learner steps of 16 prompts and 8 rollouts a
prompt (GRPO: 8 from the prompt; resets: ``1x4``, 4 from the prompt and 4 from one reset), on
several seeds (the actor's sampling seed and the learner's LoRA seed). Each run's adapter
versions are evaluated greedily on the same held-out problems. Reported: final pass rate
(mean and SD over seeds), the samples (rollouts) each method needs to reach GRPO's final pass
rate, the reset statistics, and pass rate against samples and against wall-clock.

Usage: ``python benchmarks/learning.py --quick`` (one seed, a few steps; minutes) or without
``--quick`` (3 seeds, 60 steps each; about an hour on 2 cores). ``--set KEY=VALUE`` passes
settings to every ``thoughtmdp train`` run. Writes ``learning.{json,md,png}`` under ``--out``
(default ``benchmarks/results``); the runs themselves go to ``--runs``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from report_files import save_figure, write_report
from train_runs import add_run_arguments, train_once

from thoughtmdp.runs.files import SUMMARY_FILE, read_heldout, read_jsonl, step_axes

METHODS: dict[str, str] = {
    "grpo": "[grpo]",
    "rrpo": "[1x4,rrpo]",
    "srpo": "[1x4,srpo]",
    "oracle": "[1x4,oracle]",
}
"""Each method's ``actor.episode.presets``."""
RESET_KEYS = (
    "parse_fail_rate",
    "fallback_rate",
    "exact_match_rate",
    "clean_prefix_rate",
    "correction_rate_clean",
    "correction_rate_erroneous",
)


@dataclass(frozen=True)
class Budget:
    """How long each run trains and how it is evaluated."""

    seeds: int
    steps: int
    heldout: int
    versions: int


QUICK = Budget(seeds=1, steps=3, heldout=32, versions=1)
FULL = Budget(seeds=3, steps=60, heldout=400, versions=5)


def train(method: str, seed: int, budget: Budget, runs: Path, extra: list[str]) -> Path:
    """One ``thoughtmdp train`` run (a finished one with the same settings is reused)."""
    settings = [
        f"actor.episode.presets={METHODS[method]}",
        f"actor.seed={1000 * seed}",
        f"learner.seed={seed}",
        f"learner.max_steps={budget.steps}",
        "max_minutes=null",
        f"heldout.problems={budget.heldout}",
        f"heldout.versions={budget.versions}",
        "plots=false",
        *extra,
    ]
    return train_once(runs / f"{method}-seed{seed}", settings)


def curve(run_dir: Path) -> list[dict[str, float]]:
    """Held-out pass rate by evaluated version, with the samples and seconds it took."""
    axes = step_axes(read_jsonl(run_dir / "metrics.jsonl"))
    points = []
    for version, record in sorted(read_heldout(run_dir).items()):
        samples, seconds = axes[version]
        rewards = record["rewards"]
        passed = sum(r >= 1.0 for r in rewards) / len(rewards)
        points.append(
            {"version": version, "samples": samples, "seconds": seconds, "pass_rate": passed}
        )
    return points


def run_record(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    return {
        "run_dir": str(run_dir),
        "curve": curve(run_dir),
        "resets": summary.get("resets", {}),
        "training": summary["training"],
        "localizations": summary.get("resets", {}).get("resets", 0),
        "minutes": summary["timings"]["total_s"] / 60,
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean curve over seeds (versions line up: same steps, same evaluation points)."""
    finals = [r["curve"][-1]["pass_rate"] for r in runs]
    versions = [p["version"] for p in runs[0]["curve"]]
    mean_curve = []
    for k, version in enumerate(versions):
        points = [r["curve"][k] for r in runs if len(r["curve"]) > k]
        mean_curve.append(
            {
                "version": version,
                **{
                    key: statistics.fmean(p[key] for p in points)
                    for key in ("samples", "seconds", "pass_rate")
                },
            }
        )
    resets = {
        key: statistics.fmean(values)
        for key in RESET_KEYS
        if (values := [r["resets"][key] for r in runs if key in r["resets"] and r["localizations"]])
    }
    return {
        "final_mean": statistics.fmean(finals),
        "final_sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "finals": finals,
        "curve": mean_curve,
        "resets": resets,
        "samples": statistics.fmean(r["training"]["rollouts"] for r in runs),
        "seconds": statistics.fmean(r["training"]["learner_s"] for r in runs),
    }


def samples_to_reach(points: list[dict[str, float]], target: float) -> float | None:
    """Samples at which a mean curve first reaches ``target`` (linear between points)."""
    for before, after in itertools.pairwise(points):
        if after["pass_rate"] >= target > before["pass_rate"]:
            share = (target - before["pass_rate"]) / (after["pass_rate"] - before["pass_rate"])
            return before["samples"] + share * (after["samples"] - before["samples"])
    if points and points[0]["pass_rate"] >= target:
        return points[0]["samples"]
    return None


def compare(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Samples to GRPO's final pass rate, and whether oracle >= self >= uniform held."""
    out: dict[str, Any] = {}
    if "grpo" in methods:
        target = methods["grpo"]["final_mean"]
        out["grpo_final"] = target
        out["samples_to_grpo_final"] = {
            name: samples_to_reach(m["curve"], target) for name, m in methods.items()
        }
    order = [name for name in ("oracle", "srpo", "rrpo") if name in methods]
    finals = [methods[name]["final_mean"] for name in order]
    out["ordering"] = {"methods": order, "holds": finals == sorted(finals, reverse=True)}
    return out


def markdown(report: dict[str, Any]) -> str:
    methods, cmp = report["methods"], report["comparison"]
    b = report["budget"]
    lines = [
        "# Learning: GRPO, RRPO, SRPO and oracle resets on ArithChain",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}; the runs took {report['minutes']:.0f} minutes in all.",
        "",
        f"Each run: the embedded policy, {b['steps']} learner steps of 16 prompts x 8 "
        f"rollouts, {b['seeds']} seed(s) per method, greedy pass rate on {b['heldout']} "
        "held-out problems at evenly spaced adapter versions.",
        "",
        "| method | final pass rate (mean ± SD) | start | rollouts | learner s | rollouts to "
        "GRPO's final | parse fail | fallback | exact h* | clean prefix | correction clean "
        "| correction erroneous |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in methods.items():
        r = m["resets"]
        reach = cmp.get("samples_to_grpo_final", {}).get(name)
        lines.append(
            f"| {name} | {m['final_mean']:.1%} ± {m['final_sd']:.1%} | "
            f"{m['curve'][0]['pass_rate']:.1%} | {m['samples']:,.0f} | {m['seconds']:.0f} | "
            f"{'not reached' if reach is None else f'{reach:,.0f}'} | "
            + " | ".join(_pct(r.get(k)) for k in RESET_KEYS)
            + " |"
        )
    lines += ["", *findings(report), "", "![learning curves](learning.png)", ""]
    return "\n".join(lines)


def findings(report: dict[str, Any]) -> list[str]:
    """The two questions of the benchmark, answered from the numbers."""
    methods, cmp = report["methods"], report["comparison"]
    out = []
    reach = cmp.get("samples_to_grpo_final", {})
    if "srpo" in methods and "grpo" in methods:
        srpo, grpo = reach.get("srpo"), methods["grpo"]["samples"]
        if srpo is None:
            out.append(
                f"SRPO at half of GRPO's samples: missed; SRPO did not reach GRPO's final "
                f"pass rate ({cmp['grpo_final']:.1%}) within the budget."
            )
        else:
            verdict = "met" if srpo <= grpo / 2 else "missed"
            out.append(
                f"SRPO at half of GRPO's samples: {verdict}; SRPO reached GRPO's final pass "
                f"rate ({cmp['grpo_final']:.1%}) after {srpo:,.0f} rollouts, "
                f"{srpo / grpo:.2f}x GRPO's {grpo:,.0f}."
            )
    ordering = cmp["ordering"]
    if len(ordering["methods"]) > 1:
        finals = ", ".join(f"{n} {methods[n]['final_mean']:.1%}" for n in ordering["methods"])
        verdict = "holds" if ordering["holds"] else "does not hold"
        spread = max(methods[n]["final_sd"] for n in ordering["methods"])
        out.append(
            f"Oracle >= self >= uniform {verdict} on final pass rate: {finals} (SD over "
            f"seeds up to {spread:.1%}, so gaps smaller than that are within seed noise)."
        )
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (name, m), color in zip(report["methods"].items(), plt.cm.tab10.colors, strict=False):
        for ax, x in zip(axes, ("samples", "seconds"), strict=True):
            for run in report["runs"][name]:
                xs = [p[x] for p in run["curve"]]
                ax.plot(xs, [p["pass_rate"] for p in run["curve"]], color=color, alpha=0.25)
            mean = m["curve"]
            ax.plot(
                [p[x] for p in mean],
                [p["pass_rate"] for p in mean],
                color=color,
                marker="o",
                label=name,
            )
    axes[0].set_xlabel("rollouts generated")
    axes[1].set_xlabel("training seconds")
    for ax in axes:
        ax.set_ylabel("held-out greedy pass rate")
        ax.grid(True, alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, a few steps")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--seeds", type=int, help="seeds per method")
    parser.add_argument("--steps", type=int, help="learner steps per run")
    add_run_arguments(parser, "runs/learning")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    budget = Budget(
        seeds=args.seeds or budget.seeds,
        steps=args.steps or budget.steps,
        heldout=budget.heldout,
        versions=budget.versions,
    )
    runs = {
        method: [
            run_record(train(method, seed, budget, args.runs, args.set))
            for seed in range(budget.seeds)
        ]
        for method in args.methods
    }
    methods = {name: aggregate(records) for name, records in runs.items()}
    report = {
        "command": " ".join(["python", "benchmarks/learning.py", *(argv or sys.argv[1:])]),
        "machine": _machine(),
        "minutes": sum(r["minutes"] for records in runs.values() for r in records),
        "budget": asdict(budget),
        "methods": methods,
        "comparison": compare(methods),
        "runs": runs,
    }
    write_report(args.out, "learning", report, markdown(report))
    plot(report, args.out / "learning.png")
    return report


def _machine() -> str:
    import torch

    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )


if __name__ == "__main__":
    main()
