"""The CPI-RR vs CPI-CARO simulator (benchmarks/cpi_theory.py): exact values and its --quick run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "cpi_theory.py"


@pytest.fixture(scope="module")
def cpi():
    spec = importlib.util.spec_from_file_location("cpi_theory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_exact_improvements_match_the_hand_computed_cpi_steps(cpi):
    sim = cpi.Simulator(cpi.Family(horizon=4, actions=4, tau=0.25), 0.1, np.random.default_rng(0))
    # CPI-RR: A = p tau = 0.025, alpha = A / H^2, gain = alpha * H * p * tau.
    assert sim.exact_improvement(credit=False) == pytest.approx(0.025 / 16 * 4 * 0.025)
    # CPI-CARO: A = tau on G, alpha = tau / (2 H^2), gain = alpha * H * p * tau.
    assert sim.exact_improvement(credit=True) == pytest.approx(0.25 / 32 * 4 * 0.025)


def test_with_many_samples_an_iteration_makes_the_exact_improvement(cpi):
    sim = cpi.Simulator(cpi.Family(), 0.2, np.random.default_rng(1))
    for credit in (False, True):
        gains = sim.iterate(10**9, credit, trials=50)
        assert gains.mean() == pytest.approx(sim.exact_improvement(credit), rel=0.02)


def test_without_samples_of_the_improvable_set_nothing_changes(cpi):
    sim = cpi.Simulator(cpi.Family(), 0.0, np.random.default_rng(2))
    assert np.all(sim.iterate(1000, credit=False, trials=20) == 0)


def test_slope_fits_a_power_law(cpi):
    x = [0.01, 0.1, 1.0]
    assert cpi.slope(x, [v**-2 for v in x]) == pytest.approx(-2)
    assert cpi.slope(x, [None, 1.0, None]) is None


@pytest.mark.slow
def test_quick_mode_writes_results_that_follow_theorem_1(cpi, tmp_path):
    cpi.main(["--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cpi_theory.json").read_text())
    slopes = report["results"]["slopes_small_coverage"]
    assert slopes["samples_rr"] < -1.2
    assert abs(slopes["samples_caro"]) < 0.3
    assert slopes["improvement_caro"] == pytest.approx(1.0, abs=0.1)
    rows = report["results"]["rows"]
    assert all(r["samples_caro"] <= r["samples_rr"] for r in rows)
    assert "| log-log slope in p |" in (tmp_path / "cpi_theory.md").read_text()
    assert (tmp_path / "cpi_theory.png").stat().st_size > 10_000
