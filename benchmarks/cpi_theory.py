"""Theory check: CPI with random resets (CPI-RR) vs with a credit-assignment oracle (CPI-CARO).

One iteration of the paper's Algorithm 1 on the fork MDP (``cpi/mdp.py``): a finite-horizon
MDP whose base policy's first decision sets the on-policy probability ``p`` of being in a
tau-improvable state, so an update that changes that decision changes ``p`` and the CPI
bound's quadratic (state-shift) term is real. Gains ``J(pi_alpha) - J(pi)`` are exact.

Success is Theorem 1's event: the returned policy improves ``J`` by at least
``tau^2 p^2 / (8 H R)`` (CPI-RR) or ``tau^2 p / (16 H R)`` (CPI-CARO). Samples needed: the
fewest Q-rollouts with which a share ``1 - delta`` of independent iterations meet it. Theorem 1
predicts that this grows as ``|Y| H^2 / (tau^2 p^2)`` for CPI-RR and as ``|Y| H^2 / tau^2`` for
CPI-CARO: log-log slopes in ``p`` of -2 and 0, and -2 for their ratio. Measured on a base
family and with ``|Y|``, ``H`` and ``tau`` each moved both ways. Numpy only.

Usage: ``python benchmarks/cpi_theory.py --quick`` (seconds) or without ``--quick`` (a few
minutes on 2 cores). Writes ``cpi_theory.{json,md,png}`` under ``--out``
(default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cpi.iteration import exact_improvement, iterate, theorem_bound
from cpi.mdp import Family, ForkMDP
from cpi.page import markdown, plot
from report_files import RESULTS, write_report

DELTA = 0.05
"""Theorem 1's failure probability: success means a rate of at least ``1 - DELTA``.

At 0.1 the threshold sits on the knee of CPI-RR's success curve (a plateau near 90 % where
most of the remaining failures are estimates ``A_hat <= 0``), which makes the crossing jumpy;
at 0.05 it lies in the tail that Theorem 1's ``1 / p^2`` governs."""
PREDICTED_P = {"samples_rr": -2.0, "samples_caro": 0.0, "ratio": -2.0}
"""Theorem 1's log-log slopes in ``p``."""
PREDICTED_SHAPE = {"actions": 1.0, "horizon": 2.0, "tau": -2.0}
"""Theorem 1's exponents of the samples needed in ``|Y|``, ``H`` and ``tau`` (both variants)."""
BASE = Family()
VARIATIONS = {"actions": (2, 8), "horizon": (2, 8), "tau": (0.125, 0.5)}


@dataclass(frozen=True)
class Budget:
    """How hard the simulation looks."""

    coverages: tuple[float, ...]
    trials: int
    grid_per_decade: int = 16
    max_samples: float = 1e9
    small_coverage: float = 0.1
    curve_coverages: tuple[float, ...] = (0.01, 0.1)


QUICK = Budget(coverages=(0.02, 0.05, 0.1, 0.2), trials=300, grid_per_decade=8)
FULL = Budget(
    coverages=(0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
    trials=2000,
)


def success_rate(mdp: ForkMDP, samples: int, credit: bool, trials: int, rng: Any) -> float:
    """Share of ``trials`` iterations whose returned policy meets Theorem 1's bound."""
    outcome = iterate(mdp, samples, credit, trials, rng)
    return float(np.mean(outcome.gain >= theorem_bound(mdp, credit)))


def samples_needed(
    mdp: ForkMDP, credit: bool, budget: Budget, rng: np.random.Generator
) -> float | None:
    """Fewest Q-rollouts on a log grid with a success rate of at least ``1 - DELTA``.

    Brackets the crossing with every fourth grid point, then bisects inside the bracket
    (assuming the rate grows with the sample size there). ``None`` if no size up to
    ``budget.max_samples`` succeeds.
    """
    sizes = np.unique(np.logspace(1, np.log10(budget.max_samples), _grid_size(budget)).round())

    def ok(i: int) -> bool:
        rate = success_rate(mdp, int(sizes[i]), credit, budget.trials, rng)
        return rate >= 1 - DELTA

    coarse = list(range(0, len(sizes), 4))
    if coarse[-1] != len(sizes) - 1:
        coarse.append(len(sizes) - 1)
    low = -1
    for i in coarse:
        if ok(i):
            high = i
            break
        low = i
    else:
        return None
    while high - low > 1:  # invariant: sizes[low] failed (or low = -1), sizes[high] succeeded
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return float(sizes[high])


def _grid_size(budget: Budget) -> int:
    return int((np.log10(budget.max_samples) - 1) * budget.grid_per_decade) + 1


def slope(x: list[float], y: list[float | None]) -> float | None:
    """Least-squares slope of ``log y`` on ``log x`` over the points that have a ``y``."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if b]
    if len(pairs) < 2:
        return None
    xs, ys = np.log([a for a, _ in pairs]), np.log([b for _, b in pairs])
    return float(np.polyfit(xs, ys, 1)[0])


def sweep(family: Family, budget: Budget, rng: np.random.Generator) -> dict[str, Any]:
    """Samples needed by both variants at every coverage, and their slopes in ``p``."""
    rows = []
    for p in budget.coverages:
        if p > family.max_coverage:
            continue
        mdp = ForkMDP(family, p)
        rr, caro = (samples_needed(mdp, credit, budget, rng) for credit in (False, True))
        rows.append(
            {
                "coverage": p,
                "samples_rr": rr,
                "samples_caro": caro,
                "ratio": rr / caro if rr and caro else None,
                "oracle_calls_caro": caro / p if caro else None,
                "lowered_coverage_rr": _lowered(mdp, rr, False, budget, rng),
                "lowered_coverage_caro": _lowered(mdp, caro, True, budget, rng),
            }
        )
    small = [r for r in rows if r["coverage"] <= budget.small_coverage]
    return {
        "family": asdict(family),
        "rows": rows,
        "slopes": _slopes(rows),
        "slopes_small_coverage": _slopes(small),
    }


def _lowered(
    mdp: ForkMDP, samples: float | None, credit: bool, budget: Budget, rng: np.random.Generator
) -> float | None:
    """Share of iterations at ``samples`` whose update lowered the coverage of ``G``."""
    if not samples:
        return None
    outcome = iterate(mdp, int(samples), credit, budget.trials, rng)
    return float(np.mean(outcome.coverage < mdp.p - 1e-12))


def _slopes(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    p = [r["coverage"] for r in rows]
    return {key: slope(p, [r[key] for r in rows]) for key in PREDICTED_P}


def shape_exponents(sweeps: dict[str, dict[str, Any]], budget: Budget) -> dict[str, Any]:
    """Exponents of the samples needed in ``|Y|``, ``H`` and ``tau``, per variant.

    For each parameter: the slope of ``log n`` on ``log value`` over the three families that
    differ only in it, ``n`` being the geometric mean over the small coverages all three
    measured.
    """
    out: dict[str, Any] = {}
    for name, values in VARIATIONS.items():
        keys = ["base", *(f"{name}={v:g}" for v in values)]
        xs = [getattr(BASE, name), *values]
        out[name] = {}
        for variant in ("samples_rr", "samples_caro"):
            common = set.intersection(*(_measured(sweeps[k], variant, budget) for k in keys))
            means = [_geometric_mean(sweeps[k], variant, common) for k in keys]
            out[name][variant] = slope(xs, means)
    return out


def _geometric_mean(sw: dict[str, Any], key: str, coverages: set[float]) -> float | None:
    values = [v for p, v in _points(sw, key) if p in coverages]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def _points(sw: dict[str, Any], key: str) -> list[tuple[float, float]]:
    return [(r["coverage"], r[key]) for r in sw["rows"] if r[key]]


def _measured(sw: dict[str, Any], key: str, budget: Budget) -> set[float]:
    return {p for p, _ in _points(sw, key) if p <= budget.small_coverage}


def improvements(budget: Budget, common: int, rng: np.random.Generator) -> dict[str, Any]:
    """Mean gain of one iteration at a common budget on the base family, with its slopes."""
    rows = []
    for p in budget.coverages:
        mdp = ForkMDP(BASE, p)
        row: dict[str, Any] = {"coverage": p}
        for name, credit in (("rr", False), ("caro", True)):
            row[f"improvement_{name}"] = float(
                iterate(mdp, common, credit, budget.trials, rng).gain.mean()
            )
            row[f"exact_{name}"] = exact_improvement(mdp, credit)
            row[f"bound_{name}"] = theorem_bound(mdp, credit)
        rows.append(row)
    p = [r["coverage"] for r in rows]
    slopes = {k: slope(p, [r[f"improvement_{k}"] for r in rows]) for k in ("rr", "caro")}
    return {"common_budget": common, "rows": rows, "slopes": slopes}


def curves(budget: Budget, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Success rate against sample size on the base family, for the plot."""
    sizes = np.unique(np.logspace(1, 8, 22).round()).astype(int)
    out = []
    for p in budget.curve_coverages:
        mdp = ForkMDP(BASE, p)
        for name, credit in (("rr", False), ("caro", True)):
            rates = [success_rate(mdp, int(n), credit, budget.trials, rng) for n in sizes]
            out.append({"coverage": p, "variant": name, "samples": sizes.tolist(), "rate": rates})
    return out


def run(budget: Budget, seed: int) -> dict[str, Any]:
    """Every measurement of the benchmark, as plain data."""
    rng = np.random.default_rng(seed)
    families = {"base": BASE}
    for name, values in VARIATIONS.items():
        families |= {f"{name}={v:g}": replace(BASE, **{name: v}) for v in values}
    sweeps = {key: sweep(family, budget, rng) for key, family in families.items()}
    needed = [r["samples_rr"] for r in sweeps["base"]["rows"] if r["samples_rr"]]
    common = int(10 * max(needed, default=1e6))
    return {
        "sweeps": sweeps,
        "shape_exponents": shape_exponents(sweeps, budget),
        "improvement": improvements(budget, common, rng),
        "curves": curves(budget, rng),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and coverages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = run(budget, args.seed)
    report = {
        "command": " ".join(["python", "benchmarks/cpi_theory.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.platform()}, {platform.machine()}",
        "numpy": np.__version__,
        "seconds": time.perf_counter() - started,
        "delta": DELTA,
        "predicted_p": PREDICTED_P,
        "predicted_shape": PREDICTED_SHAPE,
        "budget": asdict(budget),
        "results": results,
    }
    write_report(args.out, "cpi_theory", report, markdown(report))
    plot(report, args.out / "cpi_theory.png")
    return report


if __name__ == "__main__":
    main()
