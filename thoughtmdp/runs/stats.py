"""Pass-rate statistics: confidence intervals, paired differences, pass@k and sampled pass@1."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate (95% by default).

    Args:
        successes: Successes.
        n: Trials (0 gives ``(0.0, 1.0)``).
        z: Normal quantile of the confidence level.

    Returns:
        ``(low, high)``.

    >>> [round(x, 4) for x in wilson_interval(1, 4)]
    [0.0456, 0.6994]
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(
    before: Sequence[bool], after: Sequence[bool], z: float = Z_95
) -> dict[str, float]:
    """The change in pass rate on the same problems, with a paired normal 95% interval.

    The interval is that of the mean of the per-problem differences ``d_i = after_i -
    before_i``: pairing removes the variance that problem difficulty shares between the two
    evaluations, so it is much narrower than comparing two independent rates.

    Args:
        before: Whether each problem passed before.
        after: Whether the same problem passed after (same order).
        z: Normal quantile of the confidence level.

    Returns:
        ``gain`` (after minus before), ``ci95_low``, ``ci95_high`` and ``problems``.

    Raises:
        ValueError: If the two sequences differ in length or are empty.

    >>> paired_difference([False, False, True, True], [True, False, True, True])["gain"]
    0.25
    """
    if len(before) != len(after) or not before:
        raise ValueError(
            f"paired_difference needs two equally long, non-empty sequences, got "
            f"{len(before)} and {len(after)}"
        )
    diffs = [float(a) - float(b) for b, a in zip(before, after, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else math.inf
    half = z * math.sqrt(var / n)
    return {"gain": mean, "ci95_low": mean - half, "ci95_high": mean + half, "problems": n}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: ``1 - C(n-c, k) / C(n, k)``, computed stably.

    Args:
        n: Samples drawn.
        c: Samples that passed.
        k: The k of pass@k.

    Returns:
        The estimate in ``[0, 1]``.

    Raises:
        ValueError: If not ``0 <= c <= n`` and ``1 <= k <= n``.

    >>> round(pass_at_k(10, 3, 1), 6)
    0.3
    >>> round(pass_at_k(5, 2, 2), 4)
    0.7
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def sampled_pass_at_1(passed: Sequence[Sequence[bool | int]]) -> tuple[float, float]:
    """Sampled pass@1 over problems with ``k`` samples each, and its problem-clustered SE.

    pass@1 is the mean over problems of each problem's share of passing samples. Samples of
    one problem are correlated (they share its difficulty), so the standard error treats the
    problem as the unit: the sample standard deviation of the per-problem means over the
    square root of the number of problems (NaN with a single problem).

    Args:
        passed: Per problem, whether each of its samples passed (0/1 or booleans).

    Returns:
        ``(pass_at_1, se)``.

    Raises:
        ValueError: If there are no problems or a problem has no samples.

    Per-problem means 0.5, 1 and 0 give pass@1 0.5; their standard deviation is 0.5, so the
    SE is 0.5 / sqrt(3):

    >>> [round(x, 4) for x in sampled_pass_at_1([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])]
    [0.5, 0.2887]
    """
    if not passed or not all(passed):
        raise ValueError("sampled_pass_at_1 needs at least one problem, each with samples")
    means = [sum(float(p) for p in samples) / len(samples) for samples in passed]
    n = len(means)
    mean = sum(means) / n
    if n < 2:
        return mean, math.nan
    var = sum((m - mean) ** 2 for m in means) / (n - 1)
    return mean, math.sqrt(var / n)
