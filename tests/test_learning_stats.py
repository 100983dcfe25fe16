"""The learning benchmark's statistics and goals, on hand-made runs with known answers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))  # as when the script runs

from credit import page, report, stats
from credit.runs import FULL, METHODS, Run, study


def run(rates: list[float], rollouts_per_point: float = 100.0, tokens: float = 1000.0) -> dict:
    """A run whose evaluated versions passed ``rates``, evenly spaced in rollouts and tokens."""
    curve = [
        {
            "version": k,
            "rollouts": k * rollouts_per_point,
            "tokens": k * tokens,
            "seconds": 10.0 * k,
            "sampled": rate,
            "sampled_se": 0.01,
            "greedy": rate,
        }
        for k, rate in enumerate(rates)
    ]
    return {"curve": curve, "resets": {"exact_match_rate": 0.5}, "minutes": 1.0}


GRPO = [run([0.2, 0.3, 0.4]), run([0.2, 0.32, 0.42]), run([0.2, 0.28, 0.38])]
ORACLE = [run([0.2, 0.5, 0.6]), run([0.2, 0.48, 0.58]), run([0.2, 0.52, 0.62])]


def test_reach_interpolates_and_is_infinite_when_never_reached():
    curve = GRPO[0]["curve"]
    assert stats.reach(curve, 0.35) == pytest.approx(150.0)
    assert stats.reach(curve, 0.2) == 0.0
    assert stats.reach(curve, 0.9) == math.inf


def test_rollout_ratio_is_the_share_of_grpo_rollouts_needed_for_its_final_pass_rate():
    # GRPO's final mean is 0.4 at 200 rollouts; the oracle's mean curve (0.2, 0.5, ...)
    # reaches 0.4 two thirds of the way to its first point: 66.7 rollouts, 0.333x.
    ratio = stats.rollout_ratio("oracle")({"grpo": GRPO, "oracle": ORACLE})
    assert ratio == pytest.approx(1 / 3)
    assert stats.rollout_ratio("grpo")({"grpo": GRPO}) == pytest.approx(1.0)


def test_the_bootstrap_resamples_seeds_jointly_and_brackets_the_estimate():
    value, low, high = stats.bootstrap(
        {"grpo": GRPO, "oracle": ORACLE}, stats.rollout_ratio("oracle")
    )
    assert value == pytest.approx(1 / 3)
    assert low <= value <= high < 0.5
    again = stats.bootstrap({"grpo": GRPO, "oracle": ORACLE}, stats.rollout_ratio("oracle"))
    assert again == (value, low, high)  # seeded


def test_paired_gaps_use_student_t_over_seeds():
    gap = stats.paired_final_gap(ORACLE, GRPO)
    assert gap["gap"] == pytest.approx(0.2) and gap["seeds"] == 3
    # per-seed gaps 0.20, 0.16, 0.24: SD 0.04, t(2) = 4.303
    half = 4.303 * 0.04 / math.sqrt(3)
    assert (gap["low"], gap["high"]) == pytest.approx((0.2 - half, 0.2 + half))
    mean, low, high = stats.t_interval([0.1, 0.3])
    assert (mean, low, high) == pytest.approx((0.2, 0.2 - 12.706 * 0.1, 0.2 + 12.706 * 0.1))


def test_equal_token_gap_compares_at_the_smaller_budget():
    cheap = [run([0.2, 0.3, 0.4], tokens=500.0)]  # reaches 0.4 at 1000 tokens
    dear = [run([0.2, 0.3, 0.4], tokens=1000.0)]  # at 1000 tokens it has 0.3
    gap = stats.gap_at_equal(cheap, dear, "tokens")
    assert gap["gap"] == pytest.approx(0.1)


def test_goals_say_met_or_missed_from_the_intervals():
    runs = {"grpo": GRPO, "oracle": ORACLE, "srpo": GRPO, "rrpo": ORACLE}
    verdicts = {g["goal"].split()[0] + g["goal"].split()[1]: g["met"] for g in report.goals(runs)}
    assert verdicts["oraclereaches"] is True
    assert verdicts["srporeaches"] is False  # SRPO is GRPO here: a ratio of 1
    assert verdicts["srpo>="] is False  # behind RRPO
    text = page.markdown(
        {
            "command": "c",
            "machine": "m",
            "minutes": 1.0,
            "budget": vars(FULL),
            "goals": report.goals(runs),
            "main": report.method_rows(runs),
            "lr": [],
            "learning_rates": {},
            "knob": report.knob_rows({8: runs}, {8: {"reach_focus_clean_rate": 0.6}}),
            "probes": {},
            "shapes": {},
            "shape_goals": [],
        }
    )
    assert "| met |" in text and "| missed |" in text and "| 8 | 60.0% |" in text


def test_studies_share_runs_and_use_the_chosen_rates():
    main = study("main", FULL, {})
    assert len(main) == 4 * FULL.seeds and {r.method for r in main} == {
        "grpo",
        "rrpo",
        "srpo",
        "oracle",
    }
    knob = {r.key for r in study("knob", FULL, {})}
    assert {r.key for r in main if r.seed < 3 and r.method != "rrpo"} <= knob
    assert {r.lr for r in study("main", FULL, {"grpo": 4e-4}) if r.method == "grpo"} == {4e-4}
    assert set(METHODS) >= {r.method for r in study("shapes", FULL, {})}
    settings = Run("oracle", 2, 5).settings(FULL)
    assert "actor.task_options.hard_step=5" in settings and "actor.seed=2000" in settings


def test_methods_with_fewer_seeds_are_compared_on_the_seeds_they_share():
    gap = stats.paired_final_gap(ORACLE[:1], GRPO)
    assert gap["seeds"] == 1 and gap["gap"] == pytest.approx(0.2)
    assert stats.gap_at_equal(GRPO, ORACLE[:2], "tokens")["seeds"] == 2
    assert len(report.goals({"grpo": GRPO, "oracle": ORACLE[:1], "srpo": GRPO[:2]})) == 4
