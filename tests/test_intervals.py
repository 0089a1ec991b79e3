"""The Wilson interval every report uses."""

from __future__ import annotations

import math

import pytest

from prefalign.intervals import wilson_interval


def test_wilson_interval_matches_published_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)  # Wilson 95% CI for 8/10
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_fractional_successes_follow_the_formula():
    z, n, k = 1.959963984540054, 37, 9.5  # a tie counted ½
    p = k / n
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx(((centre - spread) / (1 + z * z / n),
                                                  (centre + spread) / (1 + z * z / n)))
