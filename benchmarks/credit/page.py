"""The learning benchmark's results page, in Markdown."""

from __future__ import annotations

import math
from typing import Any

RESET_COLUMNS = (
    "exact_match_rate",
    "clean_prefix_rate",
    "correction_clean",
    "correction_erroneous",
    "pass_at_m_clean",
    "pass_at_m_erroneous",
    "signal_reset_to_base",
    "at_hard_step",
)


def markdown(report: dict[str, Any]) -> str:
    """Goals first, then the main comparison, the learning-rate check, the knob, the shapes."""
    b = report["budget"]
    lines = [
        "# Learning: resets against GRPO on HardStepChain",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}; the runs took {report['minutes']:.0f} minutes in all.",
        "",
        f"Each run: {b['steps']} learner steps of {b['prompts']} prompts x 8 rollouts; sampled "
        f"pass@1 ({b['samples']} samples a problem, temperature 1) and greedy pass rate on "
        f"{b['problems']} held-out problems at {b['versions'] + 2} evenly spaced versions. "
        "Intervals are 95 %: Student-t over seeds for pass rates and paired gaps, a paired "
        "bootstrap over seeds for ratios of rollouts. Actors stream episodes asynchronously "
        "(8 in flight, at most one version behind) and an episode may switch to a newer "
        "adapter midway (`actor.pin_version=false`), as when the study began; the "
        "self-localiser reads a boxed number as a step even when it equals the answer.",
        "",
        *goal_table(report["goals"]),
        *method_table("Main comparison (hard step 8 of 8)", report["main"]),
        "![learning curves](learning.png)",
        "",
        *focus_table(report["main"]),
        *lr_table(report["lr"], report["learning_rates"]),
        *knob_table(report["knob"], report["probes"]),
        *method_table("Episode shapes and least-confident resets", report["shapes"]),
        *goal_table(report["shape_goals"], "Shapes against GRPO"),
    ]
    return "\n".join(lines)


def goal_table(goals: list[dict[str, Any]], title: str = "Goals") -> list[str]:
    if not goals:
        return []
    lines = [f"## {title}", "", "| goal | measured [95 %] | verdict |", "|---|---:|---|"]
    for g in goals:
        fmt = _ratio if g["ratio"] else _points
        interval = f"{fmt(g['value'])} [{fmt(g['low'])}, {fmt(g['high'])}]"
        verdict = {
            True: "met",
            False: "missed",
            "unresolved": "unresolved (the interval holds 0)",
            None: "open (one shared seed: no interval)",
        }[g["met"]]
        lines.append(f"| {g['goal']} | {interval} | {verdict} |")
    return [*lines, ""]


def method_table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        f"## {title}",
        "",
        "| method | seeds | start | final pass@1 [95 %] | SE a version | greedy final | rollouts "
        "| tokens | minutes | " + " | ".join(RESET_COLUMNS) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(RESET_COLUMNS),
    ]
    for name, r in rows.items():
        interval = f"{_pct(r['final'])} [{_pct(r['final_low'])}, {_pct(r['final_high'])}]"
        resets = " | ".join(
            _pct(r["resets"].get(k), k == "signal_reset_to_base") for k in RESET_COLUMNS
        )
        lines.append(
            f"| {name} | {r['seeds']} | {_pct(r['start'])} | {interval} | {_pct(r['final_se'])} | "
            f"{_pct(r['greedy_final'])} | {r['rollouts']:,.0f} | {r['tokens']:,.0f} | "
            f"{r['minutes']:.1f} | {resets} |"
        )
    return [*lines, ""]


def focus_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    measured = {name: r["focus"] for name, r in rows.items() if r.get("focus")}
    if not measured:
        return []
    lines = [
        "## The hard step from a correct prefix",
        "",
        "Chains sampled from the reference solver's correct thoughts up to the hard step "
        "(temperature 1): how often the rest, the hard step first, comes out right. This is "
        "the credit a run learnt where resets aim it, apart from sharpening the easy steps.",
        "",
        "| method | seeds | start | final [95 %] | SE a run | gap to GRPO, paired [95 %] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in measured.items():
        interval = f"{_pct(f['final'])} [{_pct(f['final_low'])}, {_pct(f['final_high'])}]"
        gap = f.get("gap_to_grpo")
        versus = (
            "–"
            if name == "grpo" or gap is None
            else (f"{_points(gap['gap'])} [{_points(gap['low'])}, {_points(gap['high'])}]")
        )
        lines.append(
            f"| {name} | {f['seeds']} | {_pct(f['start'])} | {interval} | {_pct(f['se'])} "
            f"| {versus} |"
        )
    return [*lines, ""]


def lr_table(rows: list[dict[str, Any]], chosen: dict[str, float]) -> list[str]:
    if not rows:
        return []
    lines = ["## Learning-rate check", "", "| method@lr | final pass@1 [95 %] |", "|---|---:|"]
    lines += [
        f"| {r['run']} | {_pct(r['final'])} [{_pct(r['low'])}, {_pct(r['high'])}] |" for r in rows
    ]
    picked = ", ".join(f"{m} {lr:g}" for m, lr in chosen.items()) or "not yet (check unfinished)"
    return [*lines, "", f"Rates used: {picked}.", ""]


def knob_table(rows: list[dict[str, Any]], probes: dict[str, Any]) -> list[str]:
    if not rows:
        return []
    methods = sorted({k for r in rows for k, v in r.items() if isinstance(v, dict)})
    lines = [
        "## The knob: position of the hard step",
        "",
        "p is the share of sampled chains of the starting policy with no mistake before the "
        "hard step; the ratios are rollouts to GRPO's final pass@1 at that position over "
        "GRPO's rollouts.",
        "",
        "| hard step | p | self-localisation (uniform) | suffix reward clean / erroneous | "
        "Pass@M clean / erroneous | GRPO final | " + " | ".join(methods) + " |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(methods),
    ]
    for r in rows:
        probe = probes.get(str(r["hard_step"]), {})
        correction = probe.get("correction", {})
        cells = [
            f"{_ratio(r[m]['ratio'])} [{_ratio(r[m]['low'])}, {_ratio(r[m]['high'])}]"
            if m in r
            else "–"
            for m in methods
        ]
        lines.append(
            f"| {r['hard_step']} | {_pct(r['p'])} | {_pct(probe.get('exact_match_rate'))} "
            f"({_pct(probe.get('uniform_baseline'))}) | "
            f"{_by_prefix(correction, 'rate')} | {_by_prefix(correction, 'pass_at_m')} | "
            f"{_pct(r['target'])} | " + " | ".join(cells) + " |"
        )
    return [*lines, "", "![knob](learning_knob.png)", ""]


def _pct(value: float | None, plain: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2f}" if plain else f"{value:.1%}"


def _points(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:+.1f} pts"


def _ratio(value: float) -> str:
    return "not reached" if math.isinf(value) else "–" if math.isnan(value) else f"{value:.2f}x"


def _by_prefix(correction: dict[str, Any], key: str) -> str:
    """``clean / erroneous`` for one figure of the probe's correction table."""
    return " / ".join(_pct(correction.get(kind, {}).get(key)) for kind in ("clean", "erroneous"))
