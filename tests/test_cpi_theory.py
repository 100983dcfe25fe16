"""The CPI-RR vs CPI-CARO simulator (benchmarks/cpi_theory.py, benchmarks/cpi/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))  # as when the script runs: its helpers import

import cpi_theory  # noqa: E402
from cpi.iteration import (  # noqa: E402
    exact_improvement,
    iterate,
    returned_policy,
    step_size,
    theorem_bound,
)
from cpi.mdp import FIX, FORK, IMPROVABLE, Family, ForkMDP  # noqa: E402


def _greedy(mdp: ForkMDP, choices: dict[tuple[int, int], int]) -> np.ndarray:
    """The base policy with the one-hot choices ``{(h, x): y}`` written over it."""
    greedy = mdp.base.copy()
    for (h, x), y in choices.items():
        greedy[h, x] = np.eye(mdp.family.actions)[y]
    return greedy


def test_the_state_distribution_follows_the_policy():
    mdp = ForkMDP(Family(horizon=3, actions=3, tau=0.5), coverage=0.2)  # q = 0.2 * 3 / 2
    np.testing.assert_allclose(mdp.state_distribution(mdp.base)[1], [0, 0.3, 0.7])
    always_branch = _greedy(mdp, {(0, FORK): FIX})
    np.testing.assert_allclose(mdp.state_distribution(always_branch)[2], [0, 1, 0])
    detour = _greedy(mdp, {(1, IMPROVABLE): 2})  # leaves g for o at step 1
    np.testing.assert_allclose(mdp.state_distribution(detour)[2], [0, 0, 1])
    assert mdp.coverage(mdp.base) == pytest.approx(0.2)
    assert mdp.coverage(always_branch) == pytest.approx(2 / 3)
    assert mdp.coverage(detour) == pytest.approx(0.1)


def test_the_improvable_set_is_the_branch_after_the_fork():
    mdp = ForkMDP(Family(horizon=3, actions=3, tau=0.5), coverage=0.2)
    q = mdp.q_values(mdp.base)
    # Under the base policy every reward is 1/2: the fork's actions tie, g's fix gains tau
    # and g's detour loses it.
    np.testing.assert_allclose(q[0, FORK], [1.5, 1.5, 1.5])
    np.testing.assert_allclose(q[1, IMPROVABLE], [1.0, 1.5, 0.5])
    reachable = mdp.state_distribution(mdp.base) > 0
    assert (mdp.improvable & reachable).tolist() == [
        [False, False, False],
        [False, True, False],
        [False, True, False],
    ]


def test_theorem_1_event_on_a_hand_computed_case():
    # H 2, |Y| 2, tau 1/2, p 1/4: the base enters g with q = 1/2; J(pi) = 1.
    mdp = ForkMDP(Family(horizon=2, actions=2, tau=0.5), coverage=0.25)
    assert float(mdp.value(mdp.base)) == pytest.approx(1.0)
    assert theorem_bound(mdp, credit=False) == pytest.approx(0.5**2 * 0.25**2 / (8 * 2))
    assert theorem_bound(mdp, credit=True) == pytest.approx(0.5**2 * 0.25 / (16 * 2))
    # A greedy that fixes g but leaves the branch at the fork: under CPI-RR the gain is
    # P(g) * P(fix) * tau = (1 - a) q * a * tau, concave in the step a.
    greedy = _greedy(mdp, {(0, FORK): 0, (1, IMPROVABLE): FIX})
    steps = np.array([0.5, 1.0])
    rr = mdp.value(returned_policy(mdp, greedy[None], steps, credit=False)) - 1.0
    np.testing.assert_allclose(rr, [0.0625, 0.0])
    assert (rr >= theorem_bound(mdp, credit=False)).tolist() == [True, False]
    # CPI-CARO leaves the fork (outside G) alone: the gain is q * a * tau.
    caro = mdp.value(returned_policy(mdp, greedy[None], steps, credit=True)) - 1.0
    np.testing.assert_allclose(caro, [0.125, 0.25])
    assert np.all(caro >= theorem_bound(mdp, credit=True))


def test_a_wrong_greedy_with_a_large_step_makes_the_policy_worse():
    mdp = ForkMDP(Family(horizon=2, actions=3, tau=0.5), coverage=0.25)
    detour = _greedy(mdp, {(1, IMPROVABLE): 2})  # reward 1/2 - tau instead of 1/2
    gain = mdp.value(returned_policy(mdp, detour[None], np.array([1.0]), credit=False))
    assert float(gain[0] - mdp.value(mdp.base)) == pytest.approx(-0.25)  # q * -tau


def test_step_sizes_follow_algorithm_1():
    advantage = np.array([-1.0, 0.4, 100.0])
    np.testing.assert_allclose(step_size(advantage, 2, credit=False), [0, 0.1, 1])
    np.testing.assert_allclose(step_size(advantage, 2, credit=True), [0, 0.05, 1])


def test_exact_improvements_match_the_hand_computed_cpi_steps():
    mdp = ForkMDP(Family(horizon=4, actions=4, tau=0.25), 0.1)
    # CPI-RR: A = p tau, alpha = A / H^2, gain = alpha * H p tau (the fork's tie keeps pi).
    assert exact_improvement(mdp, credit=False) == pytest.approx(0.025 / 16 * 4 * 0.025)
    # CPI-CARO: A = tau on G, alpha = tau / (2 H^2), gain = alpha * H p tau.
    assert exact_improvement(mdp, credit=True) == pytest.approx(0.25 / 32 * 4 * 0.025)


def test_with_many_samples_every_iteration_meets_theorem_1():
    mdp = ForkMDP(Family(), 0.2)
    rng = np.random.default_rng(1)
    for credit in (False, True):
        outcome = iterate(mdp, 10**9, credit, trials=50, rng=rng)
        assert np.all(outcome.gain >= theorem_bound(mdp, credit))
    assert outcome.gain.mean() == pytest.approx(exact_improvement(mdp, True), rel=0.01)


def test_without_improvable_states_nothing_improves():
    mdp = ForkMDP(Family(), 0.0)
    rng = np.random.default_rng(2)
    for credit in (False, True):
        assert np.allclose(iterate(mdp, 1000, credit, trials=20, rng=rng).gain, 0)


def test_slope_fits_a_power_law():
    x = [0.01, 0.1, 1.0]
    assert cpi_theory.slope(x, [v**-2 for v in x]) == pytest.approx(-2)
    assert cpi_theory.slope(x, [None, 1.0, None]) is None


def test_samples_needed_scale_as_theorem_1_predicts():
    budget = cpi_theory.Budget(coverages=(0.02, 0.05, 0.1), trials=300, grid_per_decade=8)
    sweep = cpi_theory.sweep(Family(), budget, np.random.default_rng(0))
    slopes = sweep["slopes"]
    assert -2.6 < slopes["samples_rr"] < -1.3
    assert abs(slopes["samples_caro"]) < 0.3
    assert -2.6 < slopes["ratio"] < -1.3
    assert all(r["samples_caro"] < r["samples_rr"] for r in sweep["rows"])


def test_quick_mode_writes_the_results_page(tmp_path):
    cpi_theory.main(["--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cpi_theory.json").read_text())
    assert set(report["results"]["sweeps"]) == {
        "base",
        "actions=2",
        "actions=8",
        "horizon=2",
        "horizon=8",
        "tau=0.125",
        "tau=0.5",
    }
    assert "| Theorem 1 | -2 | +0 | -2 |" in (tmp_path / "cpi_theory.md").read_text()
    assert (tmp_path / "cpi_theory.png").stat().st_size > 10_000
