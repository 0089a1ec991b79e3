"""Reward-model diagnostics and ensemble arithmetic, against hand computations."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from prefalign.errors import ConfigError
from prefalign.eval.rm import (
    FILLER_PARAGRAPH,
    accuracy_by_perturbation,
    expected_calibration_error,
    filler_probe,
    pairwise_accuracy,
    pairwise_calibration,
    pairwise_metrics,
    pearson,
    with_filler,
)
from prefalign.losses.reward import bradley_terry_loss
from prefalign.rewards.ensemble import ensemble_scores


def test_ece_hand_computed_example():
    probs = torch.tensor([0.05, 0.15, 0.18, 0.95, 0.92, 0.55])
    outcomes = torch.tensor([0, 0, 1, 1, 1, 0])
    # bins: [0,.1): .05→0 gap .05 | [.1,.2): .15,.18 → acc .5, conf .165, gap .335
    #       [.5,.6): .55→0 gap .55 | [.9,1]: .95,.92 → acc 1, conf .935, gap .065
    expected = (1 * 0.05 + 2 * 0.335 + 1 * 0.55 + 2 * 0.065) / 6
    ece, bins = expected_calibration_error(probs, outcomes, n_bins=10)
    assert ece == pytest.approx(expected, abs=1e-6)
    assert [b["count"] for b in bins] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert bins[1]["confidence"] == pytest.approx(0.165, abs=1e-6)
    assert bins[1]["accuracy"] == pytest.approx(0.5)
    assert math.isnan(bins[3]["accuracy"])


def test_ece_edges_go_to_the_upper_bin_and_one_to_the_last():
    _, bins = expected_calibration_error(torch.tensor([0.1, 1.0, 0.0]), torch.tensor([1, 1, 0]))
    assert [b["count"] for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_pairwise_calibration_counts_both_orders():
    # p = σ(ln 3) = .75 and σ(−ln 3) = .25; entries (.75,1) (.25,1) (.25,0) (.75,0):
    # both occupied bins have confidence .25/.75 and frequency .5 → ECE = .25
    chosen = torch.tensor([math.log(3.0), 0.0])
    rejected = torch.tensor([0.0, math.log(3.0)])
    ece, _ = pairwise_calibration(chosen, rejected)
    assert ece == pytest.approx(0.25, abs=1e-6)
    # one pair with p = .85: entries (.85, 1) and (.15, 0), each off by .15
    ece, bins = pairwise_calibration(torch.tensor([math.log(0.85 / 0.15)]), torch.tensor([0.0]))
    assert ece == pytest.approx(0.15, abs=1e-6)
    assert bins[8]["accuracy"] == 1.0 and bins[1]["accuracy"] == 0.0


def test_pairwise_metrics_by_hand():
    chosen = torch.tensor([2.0, 0.5, 1.0, -1.0])
    rejected = torch.tensor([1.0, 0.5, 3.0, -2.0])
    metrics = pairwise_metrics(chosen, rejected)
    assert metrics["accuracy"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)  # a tie counts one half
    everything = [2.0, 0.5, 1.0, -1.0, 1.0, 0.5, 3.0, -2.0]
    assert metrics["reward_mean"] == pytest.approx(statistics.fmean(everything))
    assert metrics["reward_std"] == pytest.approx(statistics.pstdev(everything))
    assert metrics["margin_mean"] == pytest.approx((1 + 0 - 2 + 1) / 4)
    assert pairwise_accuracy(torch.tensor([1.0]), torch.tensor([2.0])) == 0.0


def test_pearson_matches_the_textbook_formula():
    x = [1.0, 2.0, 4.0, 7.0, 3.0]
    y = [2.0, 1.0, 5.0, 9.0, 2.5]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    expected = cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert pearson(torch.tensor(x), torch.tensor(y)) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(pearson(torch.ones(3), torch.tensor([1.0, 2.0, 3.0])))


def test_filler_probe_measures_a_known_length_bias():
    slope = 0.25

    def toy_scorer(prompts, responses):
        # score = 0.25 per word plus a prompt-dependent offset that the probe must cancel
        words = [len(r.split()) if isinstance(r, str) else
                 sum(len(m["content"].split()) for m in r) for r in responses]
        return torch.tensor([slope * w + (3.0 if "x" in p else 0.0)
                             for w, p in zip(words, prompts)])

    prompts = ["x?", "why", "x y"]
    responses = ["short", "a somewhat longer answer here",
                 [{"role": "assistant", "content": "as messages"}]]
    filler_words = len(FILLER_PARAGRAPH.split())
    result = filler_probe(toy_scorer, prompts, responses)
    assert result["mean_delta"] == pytest.approx(slope * filler_words)
    assert result["std_delta"] == pytest.approx(0.0, abs=1e-9)
    assert result["increased_fraction"] == 1.0
    unbiased = filler_probe(lambda p, r: torch.zeros(len(r)), prompts, responses)
    assert unbiased["mean_delta"] == 0.0 and unbiased["increased_fraction"] == 0.0
    assert with_filler(responses[2])[0]["content"].endswith(FILLER_PARAGRAPH)
    assert responses[2][0]["content"] == "as messages"  # the input is not modified


def test_ensemble_penalty_arithmetic():
    members = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 5.0]]
    penalty = 0.5
    scores = ensemble_scores(torch.tensor(members), penalty)
    for n in range(3):
        column = [row[n] for row in members]
        mean = sum(column) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in column) / 3)
        assert scores.mean[n].item() == pytest.approx(mean)
        assert scores.std[n].item() == pytest.approx(std, rel=1e-6)
        assert scores.penalised[n].item() == pytest.approx(mean - penalty * std, rel=1e-6)
    single = ensemble_scores(torch.tensor([[0.3, -1.0]]), 2.0)
    torch.testing.assert_close(single.penalised, torch.tensor([0.3, -1.0]))
    with pytest.raises(ConfigError):
        ensemble_scores(torch.tensor([[1.0]]), -1.0)


@pytest.mark.parametrize("margin", [None, [0.5, 1.0, -0.25]])
def test_bradley_terry_centring_without_margin_and_extreme_values(margin):
    chosen = torch.tensor([40.0, -30.0, 0.1], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([-40.0, 30.0, 0.0], dtype=torch.float64)
    m = torch.tensor(margin, dtype=torch.float64) if margin else None
    out = bradley_terry_loss(chosen, rejected, m, center_coef=0.01)
    d = [c - r - (m[i].item() if m is not None else 0.0)
         for i, (c, r) in enumerate(zip(chosen.tolist(), rejected.tolist()))]
    # softplus(−d) written stably: max(−d, 0) + log1p(exp(−|d|))
    expected = [max(-x, 0.0) + math.log1p(math.exp(-abs(x))) + 0.01 * (c + r) ** 2
                for x, c, r in zip(d, chosen.tolist(), rejected.tolist())]
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)
    out.loss.backward()
    assert torch.isfinite(chosen.grad).all()


def test_accuracy_by_perturbation_groups_pairs_by_their_metadata():
    chosen = torch.tensor([1.0, 0.0, 2.0, 5.0, 3.0])
    rejected = torch.tensor([0.0, 1.0, 2.0, 4.0, 9.0])
    records = [{"metadata": {"perturbation": "verbose"}}, {"metadata": {"perturbation": "wrong"}},
               {"metadata": {"perturbation": "wrong"}}, {"metadata": {"perturbation": "verbose"}},
               {}]
    by_kind = accuracy_by_perturbation(chosen, rejected, records)
    # verbose: pairs 0 and 3 both won; wrong: pair 1 lost, pair 2 tied (one half).
    assert by_kind == {"verbose": {"pairs": 2, "accuracy": 1.0},
                       "wrong": {"pairs": 2, "accuracy": 0.25}}
    assert accuracy_by_perturbation(chosen, rejected, [{}] * 5) == {}
