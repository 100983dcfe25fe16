"""The fork MDP: a small finite-horizon MDP in which the policy's own first decision sets p.

States (one set per step ``h = 0 .. H-1``): the *fork* ``s`` (step 0 only), the *improvable
branch* ``g`` and the *ordinary branch* ``o``. Actions ``y0 .. y(|Y|-1)``.

- At the fork, ``y1`` enters ``g`` and every other action enters ``o``. The base policy plays
  ``y1`` with probability ``q`` and ``y0`` otherwise, so its coverage of the improvable set,
  ``p = q (H - 1) / H`` (Section 3.1's time average), comes from its own decision: an update
  that moves probability off ``y1`` lowers it.
- In ``g``, ``y1`` (the fix) earns mean reward ``1/2 + tau``; ``y0`` earns 1/2 and stays in
  ``g``; every other action (a detour) earns ``1/2 - tau`` and leaves for ``o``, which also
  removes the later chances to fix.
- In ``o`` every action earns 1/2 and stays in ``o``.

The base policy plays ``y0`` after the fork, so every reward it collects is Bernoulli(1/2)
wherever it is: ``V(g) = V(o)``, every advantage at the fork and in ``o`` is 0, ``A(g, y1) =
tau`` and a detour's is ``-tau``. The reachable part of the tau-improvable set is therefore
``g`` at steps ``1 .. H-1`` (``A^{G^c} = 0``, the regime of the paper's Table 1 and of its
remark on RLVR), and the policy advantage of the greedy policy is exactly ``p tau``. Rewards
lie in [0, 1]: ``R_max = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORK, IMPROVABLE, ORDINARY = 0, 1, 2
"""State indices."""
BASE_ACTION, FIX = 0, 1
"""Action indices: what the base policy plays after the fork, and the fix (also the branch)."""
R_MAX = 1.0


@dataclass(frozen=True)
class Family:
    """The MDP family's shape: horizon ``H``, action count ``|Y|``, threshold ``tau``."""

    horizon: int = 4  # H
    actions: int = 4  # |Y|
    tau: float = 0.25  # the improvable set's threshold, and the fix's advantage

    def __post_init__(self) -> None:
        if self.horizon < 2 or self.actions < 2 or not 0 < self.tau <= 0.5:
            raise ValueError(f"need H >= 2, |Y| >= 2 and 0 < tau <= 0.5; got {self}")

    @property
    def max_coverage(self) -> float:
        """The largest p the family reaches (the base policy always enters ``g``)."""
        return (self.horizon - 1) / self.horizon


class ForkMDP:
    """One member of the family at coverage ``p``, with exact dynamic programming.

    Policies are arrays ``(..., H, S, Y)`` of action probabilities; leading axes batch them.

    Example:
        >>> mdp = ForkMDP(Family(horizon=2, actions=2, tau=0.5), coverage=0.25)
        >>> mdp.state_distribution(mdp.base)[1].tolist()  # step 1: g or o
        [0.0, 0.5, 0.5]
        >>> float(mdp.coverage(mdp.base)), float(mdp.value(mdp.base))
        (0.25, 1.0)
    """

    def __init__(self, family: Family, coverage: float) -> None:
        if not 0 <= coverage <= family.max_coverage:
            raise ValueError(f"coverage {coverage} outside [0, {family.max_coverage:g}]")
        self.family, self.p = family, coverage
        h, y = family.horizon, family.actions
        self.shape = (h, 3, y)
        self.reward = np.full((3, y), 0.5)  # (S, Y) mean of a Bernoulli reward
        self.reward[IMPROVABLE, FIX] += family.tau
        self.reward[IMPROVABLE, FIX + 1 :] -= family.tau  # detours
        nxt = np.full((3, y), ORDINARY)  # (S, Y) the deterministic next state
        nxt[FORK, FIX] = IMPROVABLE
        nxt[IMPROVABLE, [BASE_ACTION, FIX]] = IMPROVABLE
        self.transition = np.eye(3)[nxt]  # (S, Y, S') one-hot
        q = coverage * h / (h - 1)  # the base policy's probability of entering g
        self.base = np.zeros(self.shape)
        self.base[:, :, BASE_ACTION] = 1.0
        self.base[0, FORK] = 0.0
        self.base[0, FORK, [BASE_ACTION, FIX]] = (1 - q, q)
        self.improvable = self.improvable_set(self.base)

    def state_distribution(self, policy: np.ndarray) -> np.ndarray:
        """``d_pi^h(x)`` for every step: ``(..., H, S)``, from the fork at step 0."""
        dist = np.zeros(policy.shape[:-1])
        dist[..., 0, FORK] = 1.0
        for h in range(self.family.horizon - 1):
            joint = dist[..., h, :, None] * policy[..., h, :, :]  # (..., S, Y)
            dist[..., h + 1, :] = np.einsum("...xy,xyz->...z", joint, self.transition)
        return dist

    def value(self, policy: np.ndarray) -> np.ndarray:
        """``J(pi)``: the expected return from the fork, ``(...)``."""
        per_state = (policy * self.reward).sum(-1)  # (..., H, S)
        return (self.state_distribution(policy) * per_state).sum((-1, -2))

    def q_values(self, policy: np.ndarray) -> np.ndarray:
        """``Q_h^pi(x, y)`` of one policy ``(H, S, Y)``, by backward induction."""
        q = np.zeros(self.shape)
        after = np.zeros(3)  # V_{h+1}
        for h in reversed(range(self.family.horizon)):
            q[h] = self.reward + self.transition @ after
            after = (policy[h] * q[h]).sum(-1)
        return q

    def improvable_set(self, policy: np.ndarray) -> np.ndarray:
        """``G_{h,tau}``: ``(H, S)`` true where some action's advantage is at least tau."""
        q = self.q_values(policy)
        advantage = q - (policy * q).sum(-1, keepdims=True)
        return advantage.max(-1) >= self.family.tau - 1e-12

    def coverage(self, policy: np.ndarray) -> np.ndarray:
        """Time-averaged probability that ``policy`` is in the base policy's improvable set.

        For the base policy this is ``p_pi``; for an updated policy it shows whether the
        update lowered the chance of reaching the states where improvement is possible.
        """
        return (self.state_distribution(policy) * self.improvable).sum(-1).mean(-1)
