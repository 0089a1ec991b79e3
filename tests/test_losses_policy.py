"""Online RL pieces against float64 python-loop computations written out here."""

from __future__ import annotations

import math

import pytest
import torch

from prefalign.losses.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_penalty,
    token_kl_term,
)
from prefalign.losses.policy import (
    gae,
    grpo_advantages,
    masked_mean,
    masked_whiten,
    policy_clip_loss,
    reduce_tokens,
    reward_to_go,
    rloo_advantages,
    value_loss,
)


def right_padded_mask(lengths, width):
    return torch.tensor([[1 if t < n else 0 for t in range(width)] for n in lengths])


@pytest.mark.parametrize("seed,shape", [(0, (1, 2)), (1, (3, 4)), (2, (5, 8))])
def test_grpo_advantages(seed, shape):
    rewards = torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                          dtype=torch.float64)
    normalised = grpo_advantages(rewards)
    centred = grpo_advantages(rewards, normalize_std=False)
    for p, row in enumerate(rewards.tolist()):
        mean = sum(row) / len(row)
        std = math.sqrt(sum((x - mean) ** 2 for x in row) / len(row))
        for g, x in enumerate(row):
            assert normalised[p, g].item() == pytest.approx((x - mean) / (std + 1e-6), rel=1e-10)
            assert centred[p, g].item() == pytest.approx(x - mean, rel=1e-10, abs=1e-14)


def test_grpo_constant_group_gives_zero_advantage_and_group_of_one_raises():
    assert torch.equal(grpo_advantages(torch.ones(2, 4)), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="group size"):
        grpo_advantages(torch.ones(3, 1))


def test_rloo_advantages():
    rewards = torch.randn(4, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    advantages = rloo_advantages(rewards)
    for p, row in enumerate(rewards.tolist()):
        for k, x in enumerate(row):
            others = [y for j, y in enumerate(row) if j != k]
            assert advantages[p, k].item() == pytest.approx(x - sum(others) / len(others),
                                                            rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match="K >= 2"):
        rloo_advantages(torch.ones(3, 1))


def test_kl_estimators_per_token_and_in_expectation():
    logp = torch.tensor([-1.0, -2.0, -0.1], dtype=torch.float64)
    ref = torch.tensor([-1.5, -1.0, -0.1], dtype=torch.float64)
    for i, (a, b) in enumerate(zip(logp.tolist(), ref.tolist())):
        assert kl_penalty(logp, ref, "k1")[i].item() == pytest.approx(a - b)
        assert kl_penalty(logp, ref, "k2")[i].item() == pytest.approx(0.5 * (a - b) ** 2)
        assert kl_penalty(logp, ref, "k3")[i].item() == pytest.approx(
            math.exp(b - a) - (b - a) - 1)
    # Under x ~ π, k1 and k3 are unbiased: their π-weighted sums equal KL(π‖ref) exactly.
    g = torch.Generator().manual_seed(0)
    pi = torch.log_softmax(torch.randn(10, generator=g, dtype=torch.float64), 0)
    rho = torch.log_softmax(torch.randn(10, generator=g, dtype=torch.float64), 0)
    kl = sum(math.exp(a) * (a - b) for a, b in zip(pi.tolist(), rho.tolist()))
    weights = pi.exp()
    assert (weights * kl_penalty(pi, rho, "k1")).sum().item() == pytest.approx(kl, rel=1e-10)
    assert (weights * kl_penalty(pi, rho, "k3")).sum().item() == pytest.approx(kl, rel=1e-10)
    assert (kl_penalty(pi, rho, "k3") >= 0).all()
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_penalty(logp, ref, "k4")


def ppo_reference(logp, old, adv, mask, eps, eps_high, reduction):
    per_seq = []
    total, count = 0.0, 0
    for b in range(len(mask)):
        seq_total, seq_count = 0.0, 0
        for t in range(len(mask[b])):
            if not mask[b][t]:
                continue
            rho = math.exp(logp[b][t] - old[b][t])
            a = adv[b][t]
            term = -min(rho * a, min(max(rho, 1 - eps), 1 + eps_high) * a)
            seq_total, seq_count = seq_total + term, seq_count + 1
        total, count = total + seq_total, count + seq_count
        if seq_count:
            per_seq.append(seq_total / seq_count)
    return total / count if reduction == "token" else sum(per_seq) / len(per_seq)


@pytest.mark.parametrize("reduction", ["token", "sequence"])
@pytest.mark.parametrize("eps_high", [None, 0.28])
@pytest.mark.parametrize("seed", [0, 1])
def test_policy_clip_loss_matches_reference(reduction, eps_high, seed):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 3
    old = logp + 0.4 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    adv = torch.randn(4, 6, generator=g, dtype=torch.float64)
    mask = right_padded_mask([6, 3, 1, 4], 6)
    loss, metrics = policy_clip_loss(logp, old, adv, mask, clip_eps=0.2,
                                     clip_eps_high=eps_high, reduction=reduction)
    high = 0.2 if eps_high is None else eps_high
    expected = ppo_reference(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(),
                             0.2, high, reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    ratio = (logp - old).exp()
    outside = ((ratio > 1 + high) & (adv > 0)) | ((ratio < 1 - 0.2) & (adv < 0))
    assert metrics["clip_frac"].item() == pytest.approx(
        outside[mask.bool()].double().mean().item())
    kl = [r - 1 - math.log(r) for r in ratio[mask.bool()].tolist()]
    assert metrics["approx_kl"].item() == pytest.approx(sum(kl) / len(kl), rel=1e-10)


def test_policy_clip_gradient_is_zero_where_clipping_is_active():
    old = torch.zeros(1, 4, dtype=torch.float64)
    # ratios 1.5 (A>0: clipped), 0.5 (A<0: clipped), 1.1 (inside), 0.5 (A>0: not clipped)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.5]], dtype=torch.float64))
    logp.requires_grad_()
    adv = torch.tensor([[2.0, -1.0, 3.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 4)
    loss, metrics = policy_clip_loss(logp, old, adv, mask, clip_eps=0.2)
    loss.backward()
    # d/dlogp of −ρA/N is −ρA/N for the unclipped tokens.
    expected = torch.tensor([[0.0, 0.0, -1.1 * 3.0 / 4, -0.5 * 1.0 / 4]], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, expected)
    assert metrics["clip_frac"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(-(1.2 * 2.0 + 0.8 * -1.0 + 1.1 * 3.0 + 0.5) / 4)


def test_policy_clip_accepts_sequence_advantages_and_rejects_bad_reduction():
    logp = torch.full((2, 3), -1.0)
    mask = torch.ones(2, 3)
    loss, _ = policy_clip_loss(logp, logp, torch.tensor([1.0, -3.0]), mask)
    assert loss.item() == pytest.approx(1.0)  # ρ = 1: loss = −mean(A) over tokens
    with pytest.raises(ValueError, match="token, sequence"):
        policy_clip_loss(logp, logp, torch.ones(2), mask, reduction="batch")


def test_value_loss_matches_reference():
    g = torch.Generator().manual_seed(3)
    values = torch.randn(3, 5, generator=g, dtype=torch.float64)
    old = values + 0.5 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    returns = torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = right_padded_mask([5, 2, 4], 5)
    got = value_loss(values, old, returns, mask, clip_eps=0.2)
    terms = []
    for b in range(3):
        for t in range(5):
            if mask[b, t]:
                v, vo, r = values[b, t].item(), old[b, t].item(), returns[b, t].item()
                clipped = min(max(v, vo - 0.2), vo + 0.2)
                terms.append(0.5 * max((v - r) ** 2, (clipped - r) ** 2))
    assert got.item() == pytest.approx(sum(terms) / len(terms), rel=1e-10)


def gae_reference(rewards, values, length, gamma, lam):
    advantages = [0.0] * length
    last = 0.0
    for t in reversed(range(length)):
        next_value = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        last = delta + gamma * lam * last
        advantages[t] = last
    return advantages, [a + v for a, v in zip(advantages, values)]


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0)])
def test_gae_matches_python_recursion_with_right_padding(gamma, lam):
    g = torch.Generator().manual_seed(11)
    lengths = [7, 3, 1, 5]
    rewards = torch.randn(4, 7, generator=g, dtype=torch.float64)
    values = torch.randn(4, 7, generator=g, dtype=torch.float64)
    mask = right_padded_mask(lengths, 7)
    # Garbage past the end must not leak in.
    rewards = torch.where(mask.bool(), rewards, torch.full_like(rewards, 1e6))
    values = torch.where(mask.bool(), values, torch.full_like(values, -1e6))
    advantages, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
    for b, n in enumerate(lengths):
        want_adv, want_ret = gae_reference(rewards[b].tolist(), values[b].tolist(), n, gamma, lam)
        torch.testing.assert_close(advantages[b, :n], torch.tensor(want_adv, dtype=torch.float64))
        torch.testing.assert_close(returns[b, :n], torch.tensor(want_ret, dtype=torch.float64))
        assert (advantages[b, n:] == 0).all() and (returns[b, n:] == 0).all()


def test_gae_skips_masked_positions_inside_a_sequence():
    g = torch.Generator().manual_seed(4)
    rewards = torch.randn(1, 6, generator=g, dtype=torch.float64)
    values = torch.randn(1, 6, generator=g, dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 0, 1, 0]])
    advantages, _ = gae(rewards, values, mask, gamma=0.9, lam=0.7)
    kept = [1, 2, 4]
    want, _ = gae_reference([rewards[0, t].item() for t in kept],
                            [values[0, t].item() for t in kept], 3, 0.9, 0.7)
    torch.testing.assert_close(advantages[0, kept], torch.tensor(want, dtype=torch.float64))
    assert (advantages[0, [0, 3, 5]] == 0).all()


def test_adaptive_kl_controller_moves_towards_target():
    controller = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    up = controller.update(current_kl=12.0, n_steps=256)  # error clipped to +0.2
    assert up == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))
    assert up > 0.1
    down = controller.update(current_kl=5.4, n_steps=100)  # error −0.1
    assert down == pytest.approx(up * (1 - 0.1 * 100 / 10000))
    assert down < up
    assert controller.value == down
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 1000) == 0.05 and fixed.value == 0.05
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)


def test_masked_mean_and_whiten():
    x = torch.tensor([[1.0, 2.0, float("nan")], [3.0, float("inf"), 6.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert masked_mean(x, mask).item() == pytest.approx(3.0)
    torch.testing.assert_close(masked_mean(x, mask, dim=1),
                               torch.tensor([1.5, 4.5], dtype=torch.float64))
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
    whitened = masked_whiten(x, mask)
    values = [1.0, 2.0, 3.0, 6.0]
    std = math.sqrt(sum((v - 3.0) ** 2 for v in values) / 4)
    expected = [[(1 - 3) / std, (2 - 3) / std, 0.0], [(3 - 3) / std, 0.0, (6 - 3) / std]]
    torch.testing.assert_close(whitened, torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-6, atol=1e-8)


def test_constant_reduction_divides_by_batch_size_and_generation_budget():
    """Dr. GRPO: Σ over tokens / (B · L), L the budget, not the batch's longest answer."""
    per_token = torch.randn(3, 4, generator=torch.Generator().manual_seed(3),
                            dtype=torch.float64)
    mask = right_padded_mask([4, 1, 0], 4)
    total = sum(per_token[b, t].item() for b in range(3) for t in range(4) if mask[b, t])
    got = reduce_tokens(per_token, mask, "constant", max_length=10)
    assert got.item() == pytest.approx(total / (3 * 10), rel=1e-12)
    with pytest.raises(ValueError, match="max_length"):
        reduce_tokens(per_token, mask, "constant")
    logp = per_token.clone().requires_grad_(True)
    old, advantages = per_token.detach() - 0.05, torch.tensor([1.0, -2.0, 0.5],
                                                              dtype=torch.float64)
    loss, _ = policy_clip_loss(logp, old, advantages, mask, 0.2, None, "constant", 10)
    want = 0.0
    for b in range(3):
        for t in range(4):
            if mask[b, t]:
                ratio = math.exp(0.05)
                a = advantages[b].item()
                want += -min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
    assert loss.item() == pytest.approx(want / 30, rel=1e-12)


@pytest.mark.parametrize("reduction", ["token", "sequence", "constant"])
def test_kl_term_of_the_loss_follows_the_policy_reduction(reduction):
    logp = torch.randn(3, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = logp + 0.3 * torch.randn(3, 5, generator=torch.Generator().manual_seed(5),
                                   dtype=torch.float64)
    lengths = [5, 2, 1]
    mask = right_padded_mask(lengths, 5)
    k3 = [[math.exp(ref[b, t].item() - logp[b, t].item()) - (ref[b, t].item()
           - logp[b, t].item()) - 1 for t in range(lengths[b])] for b in range(3)]
    want = {"token": sum(map(sum, k3)) / sum(lengths),
            "sequence": sum(sum(row) / len(row) for row in k3) / 3,
            "constant": sum(map(sum, k3)) / (3 * 8)}[reduction]
    got = token_kl_term(logp, ref, mask, "k3", reduction, max_length=8)
    assert got.item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reward_to_go_skips_padding(gamma):
    rewards = torch.randn(2, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]])
    got = reward_to_go(rewards, mask, gamma)
    for b in range(2):
        valid = [t for t in range(5) if mask[b, t]]
        for k, t in enumerate(valid):
            want = sum(gamma ** j * rewards[b, s].item() for j, s in enumerate(valid[k:]))
            assert got[b, t].item() == pytest.approx(want, rel=1e-12)
        assert all(got[b, t].item() == 0 for t in range(5) if not mask[b, t])
