"""KTO and reward-model losses against float64 formulas written out here."""

from __future__ import annotations

import math

import pytest
import torch

from prefalign.losses.reward import bradley_terry_loss, regression_loss
from prefalign.losses.unpaired import kto_kl_estimate, kto_loss


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def kto_reference(policy, ref, labels, kl, beta, w_d, w_u):
    r = policy - ref
    z = max(0.0, float(kl))
    losses = torch.stack([
        w_d * (1 - sigmoid(beta * (r[i] - z))) if labels[i] else w_u * (1 - sigmoid(beta * (z - r[i])))
        for i in range(len(labels))
    ])
    return losses.mean(), losses


@pytest.mark.parametrize("seed,batch", [(0, 1), (1, 5), (2, 12)])
@pytest.mark.parametrize("params", [{}, {"beta": 0.7, "desirable_weight": 1.5,
                                         "undesirable_weight": 0.4}])
@pytest.mark.parametrize("kl", [0.8, -0.5])
def test_kto_values_and_gradients(seed, batch, params, kl):
    g = torch.Generator().manual_seed(seed)
    policy = -30 * torch.rand(batch, generator=g, dtype=torch.float64)
    ref = policy + 4 * torch.randn(batch, generator=g, dtype=torch.float64)
    labels = torch.rand(batch, generator=g) < 0.5
    full = {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0, **params}

    policy_m = policy.clone().requires_grad_()
    out = kto_loss(policy_m, ref, labels, torch.tensor(kl, dtype=torch.float64), **params)
    out.loss.backward()
    policy_r = policy.clone().requires_grad_()
    loss, losses = kto_reference(policy_r, ref, labels, kl, full["beta"],
                                 full["desirable_weight"], full["undesirable_weight"])
    loss.backward()

    torch.testing.assert_close(out.loss, loss.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.losses, losses.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(policy_m.grad, policy_r.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(out.rewards, full["beta"] * (policy - ref))
    assert out.kl.item() == max(0.0, kl)
    assert not out.rewards.requires_grad


def test_kto_reference_point_gets_no_gradient():
    kl = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    policy = torch.tensor([-3.0, -4.0], dtype=torch.float64, requires_grad=True)
    out = kto_loss(policy, torch.tensor([-3.5, -3.0], dtype=torch.float64),
                   torch.tensor([True, False]), kl)
    out.loss.backward()
    assert kl.grad is None


def test_kto_kl_estimate_is_clamped_detached_mean():
    policy = torch.tensor([-2.0, -5.0, -1.0], requires_grad=True)
    ref = torch.tensor([-3.0, -4.5, -1.0])
    estimate = kto_kl_estimate(policy, ref)
    assert estimate.item() == pytest.approx((1.0 - 0.5 + 0.0) / 3)
    assert not estimate.requires_grad
    assert kto_kl_estimate(ref, policy.detach()).item() == 0.0


def test_kto_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        kto_loss(torch.zeros(3), torch.zeros(3), torch.ones(2, dtype=torch.bool), 0.0)


@pytest.mark.parametrize("seed,batch", [(0, 1), (3, 8)])
@pytest.mark.parametrize("use_margin,center", [(False, 0.0), (True, 0.0), (True, 0.05)])
def test_bradley_terry_values_and_gradients(seed, batch, use_margin, center):
    g = torch.Generator().manual_seed(seed)
    chosen = 2 * torch.randn(batch, generator=g, dtype=torch.float64)
    rejected = 2 * torch.randn(batch, generator=g, dtype=torch.float64)
    margin = torch.rand(batch, generator=g, dtype=torch.float64) if use_margin else None

    c_m, r_m = chosen.clone().requires_grad_(), rejected.clone().requires_grad_()
    out = bradley_terry_loss(c_m, r_m, margin=margin, center_coef=center)
    out.loss.backward()

    c_r, r_r = chosen.clone().requires_grad_(), rejected.clone().requires_grad_()
    m = margin if margin is not None else torch.zeros(batch, dtype=torch.float64)
    losses = torch.log1p(torch.exp(-(c_r - r_r - m))) + center * (c_r + r_r) ** 2
    losses.mean().backward()

    torch.testing.assert_close(out.losses, losses.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c_m.grad, c_r.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(r_m.grad, r_r.grad, rtol=1e-10, atol=1e-14)
    expected_accuracy = sum(a > b for a, b in zip(chosen.tolist(), rejected.tolist())) / batch
    assert out.accuracy.item() == pytest.approx(expected_accuracy)


def test_bradley_terry_known_value():
    out = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]))
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


def test_regression_loss_against_normalised_scores():
    predicted = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64, requires_grad=True)
    scores = torch.tensor([5.0, 9.0, 1.0], dtype=torch.float64)
    loss = regression_loss(predicted, scores, mean=5.0, std=2.0)
    expected = ((0.0 - 0.0) ** 2 + (1.0 - 2.0) ** 2 + (-0.5 + 2.0) ** 2) / 3
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    torch.testing.assert_close(
        predicted.grad, torch.tensor([0.0, -2.0 / 3, 3.0 / 3], dtype=torch.float64))
    with pytest.raises(ValueError, match="std"):
        regression_loss(predicted, scores, mean=0.0, std=0.0)
