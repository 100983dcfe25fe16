"""A run's summary: held-out pass rate before and after, training, resets and the time split.

Everything is computed from the run folder's files (``metrics.jsonl``, ``episodes.jsonl``,
``heldout.json``), so ``summary.json`` can be rebuilt from a finished run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from thoughtmdp.runs.files import EPISODES_FILE, METRICS_FILE, SUMMARY_FILE, read_jsonl
from thoughtmdp.runs.stats import paired_difference, sampled_pass_at_1, wilson_interval
from thoughtmdp.settings.train import TrainConfig, method_name


def heldout_record(result: Any) -> dict[str, Any]:
    """A held-out result as plain data (per-problem outcomes kept for paired intervals).

    Greedy: ``problem_ids``, ``rewards``, ``well_formed``, ``seconds`` and ``pass_rate``.
    With sampled rollouts (a :class:`~thoughtmdp.evaluation.heldout.HeldoutResult` whose
    ``sampled`` is set), ``sampled`` holds ``samples`` (k), ``temperature``, ``passed`` (per
    problem, 0/1 per sample), ``pass_at_1`` and ``se`` (clustered by problem).
    """
    record = {
        "problem_ids": list(result.problem_ids),
        "rewards": list(result.rewards),
        "well_formed": list(result.well_formed),
        "seconds": result.seconds,
        "pass_rate": result.pass_rate,
    }
    if getattr(result, "sampled", None) is not None:
        record["sampled"] = result.sampled.record()
    return record


def heldout_summary(heldout: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Pass rates of every evaluated version, and the paired gain of the last over the first."""
    if not heldout:
        return {}
    versions = sorted(heldout)
    rates = {v: _rate(heldout[v]) for v in versions}
    out: dict[str, Any] = {"problems": len(heldout[versions[0]]["rewards"]), "versions": rates}
    out["before"], out["after"] = rates[versions[0]], rates[versions[-1]]
    out["before"]["version"], out["after"]["version"] = versions[0], versions[-1]
    if len(versions) > 1:
        out["gain"] = paired_difference(
            _passed(heldout[versions[0]]), _passed(heldout[versions[-1]])
        )
    return out


def _passed(record: dict[str, Any]) -> list[bool]:
    return [r >= 1.0 for r in record["rewards"]]


def _rate(record: dict[str, Any]) -> dict[str, Any]:
    passed = _passed(record)
    low, high = wilson_interval(sum(passed), len(passed))
    rate = {
        "pass_rate": sum(passed) / max(len(passed), 1),
        "ci95": [low, high],
        "well_formed_rate": sum(record["well_formed"]) / max(len(passed), 1),
    }
    if "sampled" in record:  # runs from before sampled pass@1 have none
        sampled = record["sampled"]
        pass_at_1, se = sampled_pass_at_1(sampled["passed"])
        rate["sampled"] = {
            "pass_at_1": pass_at_1,
            "se": se,
            "samples": sampled["samples"],
            "temperature": sampled["temperature"],
        }
    return rate


def reset_statistics(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Reset statistics over a run's ``episodes.jsonl`` records.

    Returns:
        ``episodes``, ``resets`` (with a reset group), ``fallback_rate`` (episodes without a
        failed rollout), ``skip_rate``, ``parse_fail_rate`` (localiser answers naming no
        valid step), ``position_mean`` (``h*/H_s``), ``suffix_pass_rate`` and, with a step
        oracle, ``exact_match_rate``, ``clean_prefix_rate`` and ``correction_rate_clean`` /
        ``correction_rate_erroneous`` (reset-group reward by prefix kind). Rates without a
        denominator are left out.
    """
    resets = [r for e in episodes for r in e.get("resets", [])]
    used = [r for r in resets if r["reset_index"] is not None]
    judged = [r for r in used if r["clean"] is not None]
    stats: dict[str, Any] = {"episodes": len(episodes), "resets": len(used)}
    _mean(stats, "fallback_rate", [e["fell_back"] for e in episodes])
    _mean(stats, "skip_rate", [r["reset_index"] is None for r in resets])
    _mean(
        stats,
        "parse_fail_rate",
        [r["parse_status"] != "ok" for r in resets if r["policy"] == "self"],
    )
    _mean(stats, "position_mean", [r["reset_index"] / r["seed_length"] for r in used])
    _mean(stats, "suffix_pass_rate", [x for r in used for x in r["suffix_rewards"]])
    _mean(stats, "exact_match_rate", [r["reset_index"] == r["oracle_index"] for r in judged])
    _mean(stats, "clean_prefix_rate", [r["clean"] for r in judged])
    _mean(
        stats,
        "correction_rate_clean",
        [x for r in judged if r["clean"] for x in r["suffix_rewards"]],
    )
    _mean(
        stats,
        "correction_rate_erroneous",
        [x for r in judged if not r["clean"] for x in r["suffix_rewards"]],
    )
    return stats


def _mean(stats: dict[str, Any], key: str, values: Sequence[float | bool]) -> None:
    if values:
        stats[key] = sum(float(v) for v in values) / len(values)


def training_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Steps, data and the learner's time split, from ``metrics.jsonl`` records."""

    def total(key: str) -> float:
        return float(sum(r.get(key, 0.0) for r in records))

    step_s, update_s, sync_s = (
        total("timing_s/step"),
        total("timing_s/update_actor"),
        total("timing_s/update_weights"),
    )
    episodes = sum(v for r in records for k, v in r.items() if k.startswith("learner/episodes/"))
    return {
        "steps": int(records[-1]["step"]) if records else 0,
        "episodes": int(episodes),
        "rollouts": int(total("perf/rollouts")),
        "tokens": int(total("perf/total_num_tokens")),
        "learner_s": step_s,
        "episodes_per_s": episodes / step_s if step_s else 0.0,
        "time_split_s": {
            "waiting_for_episodes": max(step_s - update_s - sync_s, 0.0),
            "update": update_s,
            "weight_sync": sync_s,
        },
        "stale_skipped": int(total("staleness/skipped")),
    }


def write_summary(
    resolved: TrainConfig,
    heldout: dict[int, dict[str, Any]],
    warm_start: dict[str, Any] | None,
    timings: dict[str, float],
    stopped_by_time: bool,
) -> dict[str, Any]:
    """Build the run's summary from its folder and write ``summary.json``."""
    run_dir = resolved.run_dir
    assert run_dir is not None
    summary = {
        "run_dir": str(run_dir),
        "method": method_name(resolved),
        "model": resolved.model or "embedded",
        "actors": resolved.actors,
        "heldout": heldout_summary(heldout),
        "training": {
            **training_summary(read_jsonl(run_dir / METRICS_FILE)),
            "stopped_by_time": stopped_by_time,
        },
        "resets": reset_statistics(read_jsonl(run_dir / EPISODES_FILE)),
        "warm_start": warm_start,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary: dict[str, Any], console: Any) -> None:
    """The summary as rich tables."""
    from rich.table import Table

    table = Table(title=f"thoughtmdp train: {summary['method']} ({summary['run_dir']})")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    for label, value in summary_rows(summary):
        table.add_row(label, value)
    console.print(table)


def sampled_text(sampled: dict[str, Any]) -> str:
    """Sampled pass@1 and its standard error as text.

    >>> sampled_text({"pass_at_1": 0.5, "se": 0.0289})
    '50.0% ± 2.9%'
    """
    return f"{sampled['pass_at_1']:.1%} ± {sampled['se']:.1%}"


RESET_LABELS = {"resets": "resets with a reset group"}


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the summary table, as text."""
    rows: list[tuple[str, str]] = []
    held = summary["heldout"]
    if held:
        n = held["problems"]
        for label, key in (("before", "before"), ("after", "after")):
            rate = held[key]
            rows.append(
                (
                    f"held-out pass rate {label} (v{rate['version']}, {n} problems, T=0)",
                    f"{rate['pass_rate']:.1%} [{rate['ci95'][0]:.1%}, {rate['ci95'][1]:.1%}]",
                )
            )
            if "sampled" in rate:
                sampled = rate["sampled"]
                rows.append(
                    (
                        f"held-out sampled pass@1 {label} ({sampled['samples']} samples, "
                        f"T={sampled['temperature']:g})",
                        f"{sampled_text(sampled)} (SE)",
                    )
                )
        if "gain" in held:
            gain = held["gain"]
            rows.append(
                (
                    "gain (paired 95% interval)",
                    f"{100 * gain['gain']:+.1f} pts "
                    f"[{100 * gain['ci95_low']:+.1f}, {100 * gain['ci95_high']:+.1f}]",
                )
            )
        rows.append(("well-formed chains after", f"{held['after']['well_formed_rate']:.1%}"))
    training = summary["training"]
    rows.append(
        (
            "steps / episodes / rollouts",
            f"{training['steps']} / {training['episodes']} / {training['rollouts']}",
        )
    )
    if training.get("stopped_by_time"):
        rows.append(("stopped by", "the time budget (max_minutes)"))
    rows.append(("episodes per second", f"{training['episodes_per_s']:.2f}"))
    split = training["time_split_s"]
    total = max(sum(split.values()), 1e-9)
    rows += [
        (f"learner time: {k.replace('_', ' ')}", f"{v:.0f}s ({v / total:.0%})")
        for k, v in split.items()
    ]
    resets = summary["resets"]
    for key in (
        "resets",
        "fallback_rate",
        "parse_fail_rate",
        "exact_match_rate",
        "clean_prefix_rate",
        "correction_rate_clean",
        "correction_rate_erroneous",
        "suffix_pass_rate",
    ):
        if key in resets:
            value = resets[key]
            rows.append(
                (
                    RESET_LABELS.get(key, f"reset {key.replace('_', ' ')}"),
                    f"{value:.1%}" if isinstance(value, float) else str(value),
                )
            )
    timings = summary.get("timings", {})
    if timings:
        rows.append(
            (
                "wall clock (model, eval, training, eval)",
                " / ".join(
                    f"{timings.get(k, 0):.0f}s"
                    for k in ("model_s", "heldout_before_s", "training_s", "heldout_after_s")
                ),
            )
        )
    return rows
