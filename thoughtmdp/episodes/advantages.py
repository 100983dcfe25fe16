"""Group-relative advantages (paper section 4.3, Algorithm 2 phase 3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

EPSILON = 1e-6


def group_advantages(rewards: Sequence[float], normalize_std: bool = True) -> NDArray[np.float64]:
    r"""``A_i = (r_i - mean(r)) / std(r)`` within one group.

    The standard deviation is the sample one (``ddof=1``) plus ``1e-6``, as in verl's GRPO
    estimator (https://github.com/volcengine/verl, ``compute_grpo_outcome_advantage``). A group
    whose rewards are all equal, or that has a single rollout, carries no signal and gets
    exact zeros, never NaN. ``normalize_std=False`` gives the mean-only (Dr. GRPO) variant.

    Args:
        rewards: The terminal rewards of the group's rollouts.
        normalize_std: Divide by the group's standard deviation.

    Returns:
        One advantage per rollout.

    >>> group_advantages([1.0, 0.0, 0.0, 1.0]).round(4).tolist()
    [0.866, -0.866, -0.866, 0.866]
    >>> group_advantages([1.0, 1.0, 1.0]).tolist()
    [0.0, 0.0, 0.0]
    >>> group_advantages([1.0, 0.0], normalize_std=False).tolist()
    [0.5, -0.5]
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.size < 2 or np.all(r == r[0]):
        return np.zeros_like(r)
    centered: NDArray[np.float64] = r - r.mean()
    if not normalize_std:
        return centered
    scale = float(r.std(ddof=1)) + EPSILON
    return centered / scale
