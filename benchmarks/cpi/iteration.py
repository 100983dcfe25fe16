"""One iteration of Algorithm 1 (CPI-RR or CPI-CARO) on the fork MDP, many times over.

Vectorised over independent iterations ("trials"): Q-rollouts are drawn per table cell
(multinomial counts, binomial sums), so an iteration costs the same whatever its sample size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpi.mdp import R_MAX, ForkMDP


@dataclass(frozen=True)
class Outcome:
    """What ``trials`` iterations returned; every array is ``(trials,)``."""

    gain: np.ndarray
    """``J(pi_alpha) - J(pi)``, exact."""
    step: np.ndarray
    """The step size ``alpha``."""
    advantage: np.ndarray
    """The advantage estimate ``A_hat`` the step was computed from."""
    coverage: np.ndarray
    """The updated policy's coverage of the base policy's improvable set."""


def theorem_bound(mdp: ForkMDP, credit: bool) -> float:
    """Theorem 1's improvement floor: ``tau^2 p^2 / (8 H R)`` (a) or ``tau^2 p / (16 H R)`` (b).

    Part (a) states ``A(pi^+)^2 / (8 H R)``; on the fork MDP ``A(pi^+) = p tau`` exactly, so
    the two forms agree.
    """
    f, p = mdp.family, mdp.p
    if credit:
        return f.tau**2 * p / (16 * f.horizon * R_MAX)
    return (f.tau * p) ** 2 / (8 * f.horizon * R_MAX)


def step_size(advantage: np.ndarray, horizon: int, credit: bool) -> np.ndarray:
    """Algorithm 1's conservative step, ``min(1, A_hat / (c H^2 R))`` with c = 2 for CARO.

    A non-positive estimate makes no update (the formula gives no valid mixture there).
    """
    return np.clip(advantage / ((2 if credit else 1) * horizon**2 * R_MAX), 0.0, 1.0)


def returned_policy(mdp: ForkMDP, greedy: np.ndarray, step: np.ndarray, credit: bool) -> np.ndarray:
    """``(1 - alpha) pi + alpha pi_hat^+``: on every state (RR), on ``G`` only (CARO)."""
    alpha = step[:, None, None, None]
    mixed = (1 - alpha) * mdp.base + alpha * greedy
    if credit:
        mixed = np.where(mdp.improvable[..., None], mixed, mdp.base)
    return mixed


def sampling_distribution(mdp: ForkMDP, credit: bool) -> np.ndarray:
    """Where the Q-rollouts start: ``(H, S, Y)``, h uniform, x on-policy, y uniform.

    The credit sampler conditions on ``x in G_{h,tau}`` (Algorithm 3's rejection sampling).
    """
    weight = mdp.state_distribution(mdp.base)  # (H, S)
    if credit:
        weight = weight * mdp.improvable
    cells = np.repeat(weight[..., None], mdp.family.actions, axis=-1)
    return cells / cells.sum()


def iterate(
    mdp: ForkMDP, samples: int, credit: bool, trials: int, rng: np.random.Generator
) -> Outcome:
    """Run ``trials`` independent iterations of ``samples`` Q-rollouts each."""
    f = mdp.family
    if credit and mdp.p == 0:  # no improvable state: pi_G = pi, no update
        zeros = np.zeros(trials)
        return Outcome(zeros, zeros, zeros, zeros)
    cells = sampling_distribution(mdp, credit)
    counts = rng.multinomial(samples, cells.ravel(), size=trials).reshape(trials, *mdp.shape)
    # A Q-rollout plays y at the reset cell and the base policy to the horizon; every reward
    # the base policy collects is Bernoulli(1/2) wherever it goes (the family's design).
    steps_after = np.arange(f.horizon - 1, -1, -1)[:, None, None]
    totals = rng.binomial(counts, mdp.reward) + rng.binomial(counts * steps_after, 0.5)
    greedy = fitted_greedy(mdp, counts, totals)
    # A_hat = 1/n sum_i |Y| (pi_hat^+ - pi)(y_i | x_i) Q_hat(x_i, y_i, h_i); a cell's fitted
    # Q_hat times its count is its total.
    advantage = f.actions * ((greedy - mdp.base) * totals).sum((1, 2, 3)) / samples
    step = step_size(advantage, f.horizon, credit)
    policy = returned_policy(mdp, greedy, step, credit)
    return Outcome(
        gain=mdp.value(policy) - mdp.value(mdp.base),
        step=step,
        advantage=advantage,
        coverage=mdp.coverage(policy),
    )


def fitted_greedy(mdp: ForkMDP, counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``pi_hat^+``: argmax of the least-squares fit, which in the tabular class is the cell mean.

    Unvisited cells are never chosen; a state no rollout visited keeps the base policy (the
    fit says nothing there). Ties go to the lowest index.
    """
    fitted = np.where(counts > 0, totals / np.maximum(counts, 1), -np.inf)
    greedy = np.zeros(counts.shape)
    np.put_along_axis(greedy, fitted.argmax(-1)[..., None], 1.0, axis=-1)
    visited = counts.sum(-1, keepdims=True) > 0
    return np.where(visited, greedy, mdp.base)


def exact_improvement(mdp: ForkMDP, credit: bool) -> float:
    """The gain with exact Q-values (the large-sample limit); exact ties keep the base policy."""
    f = mdp.family
    q = mdp.q_values(mdp.base)
    greedy = np.zeros(mdp.shape)
    np.put_along_axis(greedy, q.argmax(-1)[..., None], 1.0, axis=-1)
    tied = np.ptp(q, axis=-1, keepdims=True) < 1e-12
    greedy = np.where(tied, mdp.base, greedy)
    cells = sampling_distribution(mdp, credit) if mdp.p > 0 else np.zeros(mdp.shape)
    # E_{(x,h)~d} sum_y (pi^+ - pi)(y|x) Q(x,y): y is uniform, so the |Y| factor cancels.
    advantage = f.actions * (cells * (greedy - mdp.base) * q).sum()
    step = step_size(np.array([advantage]), f.horizon, credit)
    policy = returned_policy(mdp, greedy[None], step, credit)
    return float(mdp.value(policy)[0] - mdp.value(mdp.base))
