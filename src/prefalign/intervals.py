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
    return max(0.0, centre - half), min(1.0, centre + half)
