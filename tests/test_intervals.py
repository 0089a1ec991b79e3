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


@pytest.mark.parametrize("n", range(1, 60))
def test_no_successes_or_all_successes_give_exact_bounds(n):
    # At k = 0 the formula's lower bound is 0 exactly (centre = half); at k = n the upper
    # bound is 1. Floating point once left 5.6e-17 above 0, above the mean of 0, which
    # made an error bar negative and a report crash.
    low, high = wilson_interval(0, n)
    assert low == 0.0 and 0.0 < high < 1.0
    low, high = wilson_interval(n, n)
    assert high == 1.0 and 0.0 < low < 1.0
    for k in range(n + 1):
        low, high = wilson_interval(k, n)
        assert low <= k / n <= high
