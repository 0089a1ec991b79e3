"""Numerics of policy comparison, each checked against an independent float64 computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefalign.eval.best_of import best_of_n_kl_bound, pick
from prefalign.eval.length_control import fit_length_logistic, length_controlled_win_rate
from prefalign.eval.stats import (
    bootstrap_interval,
    has_verbose_opener,
    kl_estimates,
    verbose_opener_rate,
    verdict_points,
    win_points,
)
from prefalign.judges.base import PairwiseVerdict


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, written out."""
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def test_bootstrap_interval_matches_a_written_out_percentile_bootstrap():
    values = [0.3, -1.2, 2.5, 0.0, 0.7, 1.1, -0.4, 3.3, 0.9]
    seed, resamples = 7, 500
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), size=(resamples, len(values)))
    means = sorted(sum(values[i] for i in row) / len(values) for row in index.tolist())
    expected = (_percentile(means, 2.5), _percentile(means, 97.5))
    low, high = bootstrap_interval(values, seed=seed, resamples=resamples)
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert low < sum(values) / len(values) < high
    assert bootstrap_interval(values, seed=seed + 1, resamples=resamples) != (low, high)


def test_win_points_count_ties_as_half():
    assert win_points([1.0, 2.0, 3.0, 5.0], [1.0, 1.0, 4.0, 5.0 + 1e-9]) == [0.5, 1.0, 0.0, 0.5]
    verdicts = [PairwiseVerdict.from_orders(0.9, 0.8), PairwiseVerdict.from_orders(0.9, 0.2),
                PairwiseVerdict.from_orders(0.1, 0.3)]
    assert verdict_points(verdicts) == pytest.approx([0.85, 0.5, 0.2])


def test_kl_estimators_match_the_formulas():
    policy = [[-0.5, -1.0, -2.0], [-0.1]]
    reference = [[-0.7, -0.9, -3.0], [-0.4]]
    k1, k3, tokens = [], [], 0
    for mine, ref in zip(policy, reference):
        k1.append(sum(m - r for m, r in zip(mine, ref)))
        k3.append(sum(math.exp(r - m) - 1 - (r - m) for m, r in zip(mine, ref)))
        tokens += len(mine)
    got = kl_estimates(policy, reference)
    assert got["kl_k1_seq"] == pytest.approx(sum(k1) / 2, abs=1e-12)
    assert got["kl_k3_seq"] == pytest.approx(sum(k3) / 2, abs=1e-12)
    assert got["kl_k1_token"] == pytest.approx(sum(k1) / tokens, abs=1e-12)
    assert got["kl_k3_token"] == pytest.approx(sum(k3) / tokens, abs=1e-12)
    assert got["kl_k3_seq"] > 0
    same = kl_estimates(policy, policy)
    assert all(value == 0 for value in same.values())


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_length_controlled_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    difference = rng.normal(5.0, 20.0, size=400)
    x = np.tanh(difference / difference.std())
    theta, phi = 0.4, -1.3
    preference = _sigmoid(theta + phi * x)  # soft labels exactly on the model
    fitted = fit_length_logistic(preference, difference, ridge=0.0)
    assert fitted[0] == pytest.approx(theta, abs=1e-8)
    assert fitted[1] == pytest.approx(phi, abs=1e-8)
    assert fitted[2] == pytest.approx(difference.std())
    lc = length_controlled_win_rate(preference, difference, ridge=0.0)
    assert lc == pytest.approx(1 / (1 + math.exp(-theta)), abs=1e-8)
    # the raw win rate is not the length-controlled one here
    assert abs(preference.mean() - lc) > 0.02


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    rng = np.random.default_rng(1)
    difference = rng.normal(10.0, 10.0, size=4000)  # the policy is usually longer
    wins = (rng.random(4000) < _sigmoid(2.0 * np.tanh(difference / difference.std())))
    assert wins.mean() > 0.7
    assert length_controlled_win_rate(wins.astype(float), difference) == pytest.approx(0.5,
                                                                                       abs=0.05)


def test_length_controlled_equals_raw_win_rate_at_equal_lengths():
    preference = [1.0, 0.5, 0.0, 1.0, 1.0]
    assert length_controlled_win_rate(preference, [0] * 5, ridge=0.0) == pytest.approx(0.7)
    assert length_controlled_win_rate([1.0] * 6, [3, -1, 0, 2, 5, 1]) > 0.95


def test_verbose_openers():
    assert has_verbose_opener("  Sure! Here it is")
    assert has_verbose_opener("Certainly, 42")
    assert has_verbose_opener("great question. 7")
    assert not has_verbose_opener("Surely not")
    assert not has_verbose_opener("42")
    assert verbose_opener_rate(["Sure, 3", "3", "Of course: 5", "five"]) == 0.5


def test_best_of_pick_and_bound():
    assert pick([0.1, 0.9, 0.5, 0.9], None) == 1
    assert pick([0.1, 0.6, 0.9], threshold=0.5) == 1
    assert pick([0.1, 0.2, 0.3], threshold=0.5) == 2
    assert best_of_n_kl_bound(1) == 0
    assert best_of_n_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
