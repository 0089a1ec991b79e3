"""Interval estimates shared by every report."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # standard normal quantile at 0.975


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927, JASA 22:209).

    With p = k/n:  centre = (p + z²/2n) / (1 + z²/n),
    half-width = z·sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n).  (0, 1) when n = 0.
    ``successes`` may be fractional (a tie counted ½).
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact at k = 0 and k = n,
    high = 1.0 if successes >= n else min(1.0, centre + half)  # where rounding strays
    return low, high


# Student t quantiles at 0.975 (two-sided 95%) for 1..30 degrees of freedom, to 6
# decimals; beyond 30 the Cornish-Fisher expansion in 1/df (Abramowitz & Stegun
# 26.7.5) is within 1e-6 of the exact value.
T_975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
         2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
         2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
         2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` ≥ 1 degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_95
    terms = ((z**3 + z) / 4,
             (5 * z**5 + 16 * z**3 + 3 * z) / 96,
             (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
             (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160)
    return z + sum(g / df ** (k + 1) for k, g in enumerate(terms))


def t_interval(values: list[float]) -> tuple[float, float] | None:
    """95% t-interval of the mean: mean ± t₀.₉₇₅(n−1)·s/√n, s the sample standard
    deviation (n − 1 in the denominator); None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * s / math.sqrt(n)
    return mean - half, mean + half
