"""Theory check: CPI with random resets (CPI-RR) vs with a credit-assignment oracle (CPI-CARO).

A tabular simulation of one iteration of the paper's Algorithm 1 on a family of finite-horizon
MDPs in which the on-policy probability ``p`` of being in a tau-improvable state is a knob:

- ``H`` steps; at every step the state is *improvable* (``g``) with probability ``p`` and
  *ordinary* (``o``) otherwise, whatever was played before; ``|Y|`` actions.
- The base policy always plays ``y0``. Rewards are Bernoulli: mean 1/2 for every action,
  except ``y1`` in ``g`` (1/2 + tau). So ``A(g, y1) = tau`` and every other advantage is 0:
  the improvable set holds all of the improvement, as for a chain whose error is recoverable.
- CPI-RR resets at a uniform step into an on-policy state; CPI-CARO draws only improvable
  states, by rejection sampling with the oracle (Algorithm 3: ``n / p`` cheap oracle calls
  for ``n`` Q-rollouts). Both play a uniform action there and roll the base policy out to
  the horizon for an unbiased Q estimate. The function class is the tabular one, so the
  least-squares fit is the per-cell mean. The step size is ``A_hat / (H^2 R)`` (CPI-RR)
  or ``A_hat / (2 H^2 R)``, applied on the improvable set only (CPI-CARO); a non-positive
  estimate makes no update. The improvement ``J(pi_alpha) - J(pi)`` is computed exactly.

Measured across ``p`` (more than a decade): the Q-rollouts an algorithm needs so that 90 %
of its iterations reach at least half of the improvement it makes with exact advantages,
and the mean per-iteration improvement at one common budget. Theorem 1 predicts log-log
slopes of -2 (CPI-RR) and 0 (CPI-CARO) for the samples, 2 and 1 for the improvement.

Samples are drawn per table cell (multinomial counts, binomial sums), so one iteration costs
the same whatever its sample size. Numpy only.

Usage: ``python benchmarks/cpi_theory.py --quick`` (seconds) or without ``--quick`` (more
trials, a finer grid). Writes ``cpi_theory.{json,md,png}`` under ``--out``
(default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from report_files import RESULTS, save_figure, write_report

SUCCESS = 0.9
"""Share of iterations that must reach half of the exact-advantage improvement."""
PREDICTED = {
    "samples_rr": -2.0,
    "samples_caro": 0.0,
    "improvement_rr": 2.0,
    "improvement_caro": 1.0,
}
"""Theorem 1's log-log slopes in ``p``: samples needed and improvement per iteration."""


@dataclass(frozen=True)
class Family:
    """The MDP family: horizon, actions, the advantage tau on the improvable set."""

    horizon: int = 4
    actions: int = 4
    tau: float = 0.25


@dataclass(frozen=True)
class Budget:
    """How hard the simulation looks: coverages, trials per point, sample-size grid."""

    coverages: tuple[float, ...]
    trials: int
    max_samples: float = 1e9
    grid_per_decade: int = 8
    small_coverage: float = 0.1


QUICK = Budget(coverages=(0.02, 0.05, 0.1, 0.2, 0.4), trials=200)
FULL = Budget(
    coverages=(0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
    trials=2000,
    grid_per_decade=20,
)


class Simulator:
    """One CPI iteration on the family at coverage ``p``, many times over, vectorised.

    Cells are ``(h, x, y)`` with ``x`` 0 for improvable and 1 for ordinary.
    """

    def __init__(self, family: Family, coverage: float, rng: np.random.Generator) -> None:
        self.f, self.p, self.rng = family, coverage, rng
        h, y = family.horizon, family.actions
        self.reward = np.full((2, y), 0.5)
        self.reward[0, 1] += family.tau
        self.state_prob = np.array([coverage, 1 - coverage])
        self.steps_left = np.arange(h - 1, -1, -1)  # steps after h (0-based h)
        self.base = np.zeros((h, 2, y))
        self.base[..., 0] = 1.0

    def value(self, policy: np.ndarray) -> np.ndarray:
        """Exact ``J`` of each policy in a batch ``(trials, H, 2, Y)``.

        States do not depend on actions, so ``J`` is the sum over steps of the expected reward.
        """
        per_state = (policy * self.reward).sum(-1)  # (trials, H, 2)
        return (per_state * self.state_prob).sum((-1, -2))

    def iterate(self, samples: int, credit: bool, trials: int) -> np.ndarray:
        """``J(pi_alpha) - J(pi)`` of ``trials`` iterations of ``samples`` Q-rollouts each."""
        h, y = self.f.horizon, self.f.actions
        cell_prob = np.ones((h, 2, y)) / (h * y)
        cell_prob *= np.array([1.0, 0.0])[:, None] if credit else self.state_prob[:, None]
        counts = self.rng.multinomial(samples, cell_prob.ravel(), size=trials)
        counts = counts.reshape(trials, h, 2, y)
        # Q-rollout: the reward at the reset cell plus the base policy's rewards after it,
        # which are Bernoulli(1/2) whatever the state.
        future = self.rng.binomial(counts * self.steps_left[:, None, None], 0.5)
        totals = self.rng.binomial(counts, self.reward) + future
        fitted = np.where(counts > 0, totals / np.maximum(counts, 1), -np.inf)
        greedy = np.zeros_like(fitted)  # argmax; ties and unvisited rows go to y0, the base action
        np.put_along_axis(greedy, fitted.argmax(-1)[..., None], 1.0, axis=-1)
        advantage = (y * (greedy - self.base) * np.where(counts > 0, totals, 0.0)).sum(
            (1, 2, 3)
        ) / samples
        scale = (2 if credit else 1) * h**2  # R_max = 1
        alpha = np.clip(advantage / scale, 0.0, 1.0)[:, None, None, None]
        mixed = (1 - alpha) * self.base + alpha * greedy
        if credit:
            mixed[:, :, 1] = self.base[:, 1]
        return self.value(mixed) - self.value(self.base[None])

    def exact_improvement(self, credit: bool) -> float:
        """The improvement with exact advantages (the large-sample limit)."""
        h, tau, p = self.f.horizon, self.f.tau, self.p
        advantage = tau if credit else p * tau
        alpha = min(1.0, advantage / ((2 if credit else 1) * h**2))
        return alpha * h * p * tau


def samples_needed(sim: Simulator, credit: bool, budget: Budget) -> float | None:
    """Fewest Q-rollouts on the grid with which ``SUCCESS`` of the iterations reach half of it.

    Half, that is, of the exact-advantage improvement; ``None`` if no sample size up to
    ``budget.max_samples`` does.
    """
    target = 0.5 * sim.exact_improvement(credit)
    grid = np.logspace(1, np.log10(budget.max_samples), _grid_size(budget))
    for n in np.unique(grid.astype(np.int64)):
        if np.mean(sim.iterate(int(n), credit, budget.trials) >= target) >= SUCCESS:
            return float(n)
    return None


def _grid_size(budget: Budget) -> int:
    return int((np.log10(budget.max_samples) - 1) * budget.grid_per_decade) + 1


def slope(x: list[float], y: list[float | None]) -> float | None:
    """Least-squares slope of ``log y`` on ``log x`` over the points that have a ``y``."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if b]
    if len(pairs) < 2:
        return None
    xs, ys = np.log([a for a, _ in pairs]), np.log([b for _, b in pairs])
    return float(np.polyfit(xs, ys, 1)[0])


def run(family: Family, budget: Budget, seed: int) -> dict[str, Any]:
    """Every measurement of the benchmark, as plain data."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in budget.coverages:
        sim = Simulator(family, p, rng)
        rows.append(
            {
                "coverage": p,
                "samples_rr": samples_needed(sim, False, budget),
                "samples_caro": samples_needed(sim, True, budget),
                "exact_improvement_rr": sim.exact_improvement(False),
                "exact_improvement_caro": sim.exact_improvement(True),
            }
        )
    common = _common_budget(rows)
    for row in rows:
        sim = Simulator(family, row["coverage"], rng)
        for name, credit in (("rr", False), ("caro", True)):
            gains = sim.iterate(common, credit, budget.trials)
            row[f"improvement_{name}"] = float(gains.mean())
        row["oracle_calls_caro"] = row["samples_caro"] and row["samples_caro"] / row["coverage"]
    small = [r for r in rows if r["coverage"] <= budget.small_coverage]
    return {
        "common_budget": common,
        "rows": rows,
        "slopes": _slopes(rows),
        "slopes_small_coverage": _slopes(small),
    }


def _slopes(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    p = [r["coverage"] for r in rows]
    return {key: slope(p, [r[key] for r in rows]) for key in PREDICTED}


def _common_budget(rows: list[dict[str, Any]]) -> int:
    """A budget at which every point's iterations are reliable: 10x the most any needed."""
    needed = [r["samples_rr"] for r in rows if r["samples_rr"]]
    return int(10 * max(needed, default=1e6))


def markdown(report: dict[str, Any]) -> str:
    fam, results = report["family"], report["results"]
    s, small = results["slopes"], results["slopes_small_coverage"]
    cut = report["budget"]["small_coverage"]
    lines = [
        "# CPI-RR vs CPI-CARO on a tabular MDP family (Algorithm 1, Theorem 1)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}; numpy {report['numpy']}; {report['seconds']:.0f} s.",
        "",
        f"Family: horizon {fam['horizon']}, {fam['actions']} actions, tau {fam['tau']}; "
        f"{report['budget']['trials']} iterations per point. Samples needed: fewest "
        f"Q-rollouts with which {SUCCESS:.0%} of the iterations reach half of the "
        "exact-advantage improvement. Improvement: mean `J(pi_alpha) - J(pi)` at the common "
        f"budget of {report['results']['common_budget']:,} Q-rollouts.",
        "",
        "| p | samples CPI-RR | samples CPI-CARO | oracle calls CPI-CARO | ratio | "
        "improvement CPI-RR | improvement CPI-CARO | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]["rows"]:
        lines.append(
            f"| {r['coverage']:g} | {_n(r['samples_rr'])} | {_n(r['samples_caro'])} | "
            f"{_n(r['oracle_calls_caro'])} | {_ratio(r['samples_rr'], r['samples_caro'])} | "
            f"{r['improvement_rr']:.2e} | {r['improvement_caro']:.2e} | "
            f"{_ratio(r['improvement_caro'], r['improvement_rr'])} |"
        )
    lines += [
        "",
        f"| log-log slope in p | all points | p <= {cut:g} | Theorem 1 |",
        "|---|---:|---:|---:|",
    ]
    for key, predicted in PREDICTED.items():
        lines.append(
            f"| {key.replace('_', ' ')} | {_slope(s[key])} | {_slope(small[key])} | "
            f"{predicted:+.0f} |"
        )
    lines += [
        "",
        f"With small coverage (p <= {cut:g}, where the theorem's rates are the leading "
        f"terms): {verdict(small)}",
        "",
        f"Over all points: {verdict(s)}",
        "",
        "![CPI-RR vs CPI-CARO](cpi_theory.png)",
        "",
    ]
    return "\n".join(lines)


def verdict(slopes: dict[str, float | None]) -> str:
    """One sentence per prediction: met (within 0.3 of the predicted slope) or missed."""
    parts = []
    for key, predicted in PREDICTED.items():
        value = slopes[key]
        met = value is not None and abs(value - predicted) <= 0.3
        parts.append(
            f"{key.replace('_', ' ')} {_slope(value)} vs {predicted:+.0f}: "
            f"{'met' if met else 'missed'}"
        )
    return "; ".join(parts) + " (met: within 0.3 of the predicted slope)."


def _slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _n(value: float | None) -> str:
    return "not reached" if not value else f"{value:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else "n/a"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]["rows"]
    p = np.array([r["coverage"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (("samples", "Q-rollouts needed"), ("improvement", "improvement per iteration"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, marker in (("rr", "o"), ("caro", "s")):
            values = np.array([r[f"{key}_{name}"] or np.nan for r in rows], dtype=float)
            fit = report["results"]["slopes"][f"{key}_{name}"]
            title = f"CPI-{name.upper()} (slope {fit:+.2f})" if fit is not None else name
            ax.loglog(p, values, marker=marker, label=title)
        ax.set_xlabel("p (coverage of the improvable set)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and coverages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    family, budget = Family(), QUICK if args.quick else FULL
    started = time.perf_counter()
    results = run(family, budget, args.seed)
    report = {
        "command": " ".join(["python", "benchmarks/cpi_theory.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.platform()}, {platform.machine()}",
        "numpy": np.__version__,
        "seconds": time.perf_counter() - started,
        "family": asdict(family),
        "budget": asdict(budget),
        "results": results,
    }
    write_report(args.out, "cpi_theory", report, markdown(report))
    plot(report, args.out / "cpi_theory.png")
    return report


if __name__ == "__main__":
    main()
