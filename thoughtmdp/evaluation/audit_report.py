"""Summaries of a localisation audit: the four panels of the paper's Fig. 4 (raw deviation, Fig. 6).

(a) where resets land along the chain (self-localised vs uniform), (b) the deviation of the
self-localised step from the oracle's, with exact-match and clean-prefix rates, (c) the
suffixes' correction rate by deviation with Wilson 95% intervals, (d) correction for clean
(``self <= oracle``) vs erroneous prefixes, per suffix and as pass@M per reset.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from thoughtmdp.episodes.metrics import PASS_REWARD
from thoughtmdp.evaluation.audit import AuditResult, LocalizationRecord
from thoughtmdp.runs.stats import wilson_interval

POSITION_BINS = 10
"""Bins of the relative reset position ``h*/H_s`` in (0, 1]."""


def audit_summary(result: AuditResult) -> dict[str, Any]:
    """The audit's numbers as plain data (rates are ``None`` when their denominator is 0).

    Args:
        result: What :func:`~thoughtmdp.evaluation.audit.audit_localization` returned.

    Returns:
        Counts, rates, the deviation histogram, position histograms and correction rates.
    """
    records = result.records
    localized = [r for r in records if r.self_index is not None]
    compared = [r for r in localized if r.oracle_index is not None]
    return {
        "chains": result.chains,
        "failed": result.failed,
        "localized": len(localized),
        "compared": len(compared),
        "no_oracle": sum(r.oracle_index is None for r in records),
        "parse_fail_rate": _rate([r.parse_status != "ok" for r in records]),
        "exact_match_rate": _rate([r.deviation == 0 for r in compared]),
        "clean_prefix_rate": _rate([bool(r.clean) for r in compared]),
        "erroneous_prefix_rate": _rate([not r.clean for r in compared]),
        "mean_seed_length": _mean([r.seed_length for r in records]),
        "deviation_histogram": {
            str(d): n for d, n in sorted(Counter(r.deviation for r in compared).items())
        },
        "position_histogram": _positions(localized),
        "correction_by_deviation": _by_deviation(compared),
        "correction": {
            "clean": _correction([r for r in compared if r.clean]),
            "erroneous": _correction([r for r in compared if not r.clean]),
        },
    }


def localization_summary(records: Sequence[LocalizationRecord]) -> dict[str, Any]:
    """Exact match of self-localisation against the oracle, beside the uniform baseline.

    An answer that names no valid step counts as a miss; chains the oracle finds no wrong
    step in are left out.

    Args:
        records: The audit's records.

    Returns:
        ``chains``, ``exact_match_rate``, ``uniform_baseline`` (``mean(1 / H_s)``) and
        ``parse_fail_rate``; rates are ``None`` without chains.
    """
    judged = [r for r in records if r.oracle_index is not None]
    if not judged:
        return {"chains": 0, "exact_match_rate": None, "uniform_baseline": None}
    return {
        "chains": len(judged),
        "exact_match_rate": _rate([r.self_index == r.oracle_index for r in judged]),
        "uniform_baseline": _mean([1 / r.seed_length for r in judged]),
        "parse_fail_rate": _rate([r.parse_status != "ok" for r in judged]),
    }


def first_error_summary(
    result: AuditResult, focus: dict[str, int | None] | None = None
) -> dict[str, Any]:
    """Where the policy's own chains first go wrong, and how often a chain reaches a step cleanly.

    Args:
        result: An audit of sampled chains (one record per failed chain).
        focus: A step of interest by problem id (e.g. a hard step), if the task has one.

    Returns:
        ``sampled_pass_rate``, the ``first_error_histogram`` (oracle step -> failed chains)
        and, with ``focus``, ``at_focus_rate`` (failed chains whose first mistake is the focus
        step), ``before_focus_rate`` and ``reach_focus_clean_rate``: the share of all chains
        with no mistake before the focus step, the ``p`` of Theorem 1.

    >>> records = [LocalizationRecord("a", 0, ("x",) * 4, None, k, "ok", "") for k in (2, 3, 3)]
    >>> summary = first_error_summary(AuditResult(5, 3, records), {"a": 3})
    >>> summary["at_focus_rate"], summary["reach_focus_clean_rate"], summary["sampled_pass_rate"]
    (0.6666666666666666, 0.8, 0.4)
    """
    judged = [r for r in result.records if r.oracle_index is not None]
    out: dict[str, Any] = {
        "chains": result.chains,
        "sampled_pass_rate": 1 - result.failed / result.chains if result.chains else None,
        "first_error_histogram": {
            str(k): n for k, n in sorted(Counter(r.oracle_index for r in judged).items())
        },
    }
    if focus is None:
        return out
    aimed = [
        (r.oracle_index, step)
        for r in judged
        if r.oracle_index is not None and (step := focus.get(r.problem_id)) is not None
    ]
    before = sum(k < f for k, f in aimed)
    return {
        **out,
        "at_focus_rate": _rate([k == f for k, f in aimed]),
        "before_focus_rate": _rate([k < f for k, f in aimed]),
        "reach_focus_clean_rate": 1 - before / result.chains if result.chains else None,
    }


def audit_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: headline numbers, then one table per panel of Fig. 4.

    Args:
        summary: What :func:`audit_summary` returned.

    Returns:
        The Markdown text.
    """
    tables = [
        _table(
            "Self-localisation vs oracle",
            ["quantity", "value"],
            [[k, str(summary[k])] for k in COUNTS] + [[k, _pct(summary[k])] for k in RATES],
        ),
        _table(
            "Deviation (self - oracle)",
            ["deviation", "chains", "suffix correction", "Wilson 95%", "suffixes"],
            [_deviation_row(summary, d, n) for d, n in summary["deviation_histogram"].items()],
        ),
        _table(
            "Correction by prefix",
            ["prefix", "resets", "per suffix", "pass@M"],
            [
                [kind, str(c["resets"]), _pct(c["rate"]), _pct(c["pass_at_m"])]
                for kind, c in summary["correction"].items()
            ],
        ),
        _table(
            "Reset position h*/H_s",
            ["bin", "self", "uniform"],
            [
                [f"({i / POSITION_BINS:.1f}, {(i + 1) / POSITION_BINS:.1f}]", str(own), f"{u:.2f}"]
                for i, (own, u) in enumerate(
                    zip(*summary["position_histogram"].values(), strict=True)
                )
            ],
        ),
    ]
    return "\n".join(tables)


COUNTS = ("chains", "failed", "localized", "compared", "no_oracle")
RATES = ("parse_fail_rate", "exact_match_rate", "clean_prefix_rate", "erroneous_prefix_rate")


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _deviation_row(summary: dict[str, Any], deviation: str, chains: int) -> list[str]:
    cell = summary["correction_by_deviation"].get(deviation)
    if cell is None:
        return [deviation, str(chains), "–", "–", "0"]
    low, high = cell["ci95"]
    interval = f"[{_pct(low)}, {_pct(high)}]"
    return [deviation, str(chains), _pct(cell["rate"]), interval, str(cell["suffixes"])]


def write_audit(result: AuditResult, summary: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write ``audit.json``, ``audit.md`` and ``audit_records.jsonl`` to ``folder``.

    Returns:
        The paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "audit.json", folder / "audit.md", folder / "audit_records.jsonl"]
    paths[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(audit_markdown(summary), encoding="utf-8")
    rows = [
        json.dumps({**asdict(r), "deviation": r.deviation}, ensure_ascii=False)
        for r in result.records
    ]
    paths[2].write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return paths


def _positions(records: Sequence[LocalizationRecord]) -> dict[str, list[float]]:
    own = [0.0] * POSITION_BINS
    uniform = [0.0] * POSITION_BINS
    for r in records:
        assert r.self_index is not None
        own[_bin(r.self_index / r.seed_length)] += 1
        for h in range(1, r.seed_length + 1):
            uniform[_bin(h / r.seed_length)] += 1 / r.seed_length
    return {"self": [int(x) for x in own], "uniform": [round(x, 6) for x in uniform]}


def _bin(position: float) -> int:
    return min(max(math.ceil(position * POSITION_BINS - 1e-9) - 1, 0), POSITION_BINS - 1)


def _by_deviation(records: Sequence[LocalizationRecord]) -> dict[str, dict[str, Any]]:
    groups: dict[int, list[float]] = {}
    for r in records:
        if r.suffix_rewards:
            assert r.deviation is not None
            groups.setdefault(r.deviation, []).extend(r.suffix_rewards)
    table = {}
    for dev, rewards in sorted(groups.items()):
        wins = sum(x >= PASS_REWARD for x in rewards)
        table[str(dev)] = {
            "suffixes": len(rewards),
            "successes": wins,
            "rate": wins / len(rewards),
            "ci95": list(wilson_interval(wins, len(rewards))),
        }
    return table


def _correction(records: Sequence[LocalizationRecord]) -> dict[str, Any]:
    with_suffixes = [r for r in records if r.suffix_rewards]
    rewards = [x >= PASS_REWARD for r in with_suffixes for x in r.suffix_rewards]
    any_pass = [any(x >= PASS_REWARD for x in r.suffix_rewards) for r in with_suffixes]
    return {"resets": len(with_suffixes), "rate": _rate(rewards), "pass_at_m": _rate(any_pass)}


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
