"""Paired preference losses against float64 formulas written out here from the papers."""

from __future__ import annotations

import math

import pytest
import torch

from prefalign.losses.preference import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE,
    loss_params,
    preference_loss,
    requires_lengths,
    requires_reference,
    requires_reference_sample,
)

# Table defaults, written independently of the module's signatures.
DEFAULTS = {
    "dpo": {"beta": 0.1, "epsilon": 0.0, "center_logits": False},
    "robust": {"beta": 0.1, "epsilon": 0.1},
    "ipo": {"beta": 0.1},
    "ipo_mean": {"beta": 0.1},
    "hinge": {"beta": 0.1},
    "simpo": {"beta": 2.0, "gamma": 0.5, "epsilon": 0.0},
    "orpo": {"lam": 0.1},
    "rpo": {"beta": 0.1, "alpha": 1.0, "epsilon": 0.0},
    "caldpo": {"beta": 0.1},
    "drdpo": {"beta": 0.1, "beta_prime": 1.0},
    "xpo": {"beta": 0.1, "alpha": 1e-5},  # alpha: TRL's XPOConfig default
}
NON_DEFAULTS = {
    "dpo": [{"beta": 0.5, "epsilon": 0.2}, {"beta": 0.3, "center_logits": True}],
    "robust": [{"beta": 0.4, "epsilon": 0.3}],
    "ipo": [{"beta": 0.5}],
    "ipo_mean": [{"beta": 0.5}],
    "hinge": [{"beta": 2.0}],
    "simpo": [{"beta": 2.5, "gamma": 1.4, "epsilon": 0.1}],
    "orpo": [{"lam": 0.7}],
    "rpo": [{"beta": 0.2, "alpha": 0.5}],
    "caldpo": [{"beta": 0.5}],
    "drdpo": [{"beta": 0.3, "beta_prime": 0.5}],
    "xpo": [{"beta": 0.3, "alpha": 0.05}, {"beta": 0.1, "alpha": 0.0}],
}


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return -torch.log1p(torch.exp(-x))


def reference(name, pc, pr, refc, refr, lc, lr, ps, **p):
    """(loss, losses, chosen_rewards, rejected_rewards) straight from the formula table;
    ``ps`` is the policy's summed log-prob of a reference sample (XPO)."""
    beta = p.get("beta")
    rc, rr = pc - refc, pr - refr
    h = rc - rr
    ac, ar = pc / lc, pr / lr
    if name in ("dpo", "rpo", "drdpo"):
        eps = p.get("epsilon", 0.0)
        if p.get("center_logits"):
            h = h - h.mean().detach()
        losses = -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
        if name == "rpo":
            losses = losses + p["alpha"] * (-ac)
        rewards = beta * rc, beta * rr
    elif name == "robust":
        eps = p["epsilon"]
        losses = (-(1 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)) / (1 - 2 * eps)
        rewards = beta * rc, beta * rr
    elif name == "ipo":  # Azar et al. 2023, eq. 17: summed sequence log-ratios
        losses = (h - 1 / (2 * beta)) ** 2
        rewards = beta * rc, beta * rr
    elif name == "ipo_mean":  # the same on per-token means (TRL's ipo)
        losses = (rc / lc - rr / lr - 1 / (2 * beta)) ** 2
        rewards = beta * rc / lc, beta * rr / lr
    elif name == "xpo":  # Xie et al. 2024: DPO + α·log π(ỹ|x), ỹ ~ π_ref
        losses = -log_sigmoid(beta * h) + p["alpha"] * ps
        rewards = beta * rc, beta * rr
    elif name == "hinge":
        losses = torch.clamp(1 - beta * h, min=0)
        rewards = beta * rc, beta * rr
    elif name == "simpo":
        g, eps = p["gamma"], p["epsilon"]
        losses = (-(1 - eps) * log_sigmoid(beta * (ac - ar) - g)
                  - eps * log_sigmoid(-beta * (ac - ar) + g))
        rewards = beta * ac, beta * ar
    elif name == "orpo":
        lam = p["lam"]
        log_odds = (ac - ar) - (torch.log(1 - torch.exp(ac)) - torch.log(1 - torch.exp(ar)))
        losses = -ac - lam * log_sigmoid(log_odds)
        rewards = lam * ac, lam * ar
    elif name == "caldpo":
        losses = -log_sigmoid(h) + (rc - 1 / (2 * beta)) ** 2 + (rr + 1 / (2 * beta)) ** 2
        rewards = beta * rc, beta * rr
    else:
        raise AssertionError(name)
    if name == "drdpo":
        bp = p["beta_prime"]
        loss = -bp * torch.log(torch.exp(-losses / bp).mean())
    else:
        loss = losses.mean()
    return loss, losses, rewards[0], rewards[1]


def random_sample_logps(seed: int, batch: int, dtype=torch.float64):
    """Summed log-probs of reference samples of 1..24 tokens."""
    g = torch.Generator().manual_seed(1000 + seed)
    lengths = torch.randint(1, 25, (batch,), generator=g)
    logps = -(lengths * (0.3 + 2 * torch.rand(batch, generator=g, dtype=torch.float64)))
    return logps.to(dtype)


def random_batch(seed: int, batch: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lc = torch.randint(1, 25, (batch,), generator=g)
    lr = torch.randint(1, 25, (batch,), generator=g)
    pc = -(lc * (0.3 + 2 * torch.rand(batch, generator=g, dtype=torch.float64)))
    pr = -(lr * (0.3 + 2 * torch.rand(batch, generator=g, dtype=torch.float64)))
    refc = pc + 3 * torch.randn(batch, generator=g, dtype=torch.float64)
    refr = pr + 3 * torch.randn(batch, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (pc, pr, refc, refr)] + [lc, lr]


def run_both(name, params, seed, batch, dtype=torch.float64):
    pc, pr, refc, refr, lc, lr = random_batch(seed, batch, dtype)
    ps = random_sample_logps(seed, batch, dtype)
    pc_m, pr_m, ps_m = (t.clone().requires_grad_() for t in (pc, pr, ps))
    out = preference_loss(name, pc_m, pr_m, refc, refr, lc, lr, ps_m, **params)
    out.loss.backward()
    pc_r, pr_r, ps_r = (t.double().clone().requires_grad_() for t in (pc, pr, ps))
    full = {**DEFAULTS[name], **params}
    expected = reference(name, pc_r, pr_r, refc.double(), refr.double(),
                         lc.double(), lr.double(), ps_r, **full)
    expected[0].backward()
    grads, expected_grads = [pc_m.grad, pr_m.grad], [pc_r.grad, pr_r.grad]
    if name == "xpo":
        grads.append(ps_m.grad)
        expected_grads.append(ps_r.grad)
    else:
        assert ps_m.grad is None and ps_r.grad is None
    return out, grads, expected, expected_grads


CASES = [(name, params) for name in PREFERENCE_LOSSES
         for params in [{}] + NON_DEFAULTS[name]]


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("seed,batch", [(0, 1), (1, 4), (2, 9)])
def test_values_and_gradients_match_formula(name, params, seed, batch):
    out, grads, expected, expected_grads = run_both(name, params, seed, batch)
    loss, losses, chosen_rewards, rejected_rewards = expected
    torch.testing.assert_close(out.loss, loss.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.losses, losses.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.chosen_rewards, chosen_rewards.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.rejected_rewards, rejected_rewards.detach(),
                               rtol=1e-10, atol=1e-10)
    assert out.losses.shape == (batch,) and out.loss.dim() == 0
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_float32_inputs_close_to_float64_formula(name):
    out, grads, expected, expected_grads = run_both(name, {}, seed=5, batch=6, dtype=torch.float32)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.double(), expected[0].detach(), rtol=2e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=1e-6)


def test_defaults_are_the_table_values():
    for name, defaults in DEFAULTS.items():
        params = loss_params(name)
        for key, value in defaults.items():
            assert params[key] == value, (name, key)
        assert set(params) == set(defaults), name


def test_dpo_gradient_has_known_closed_form():
    # d/dπc of −log σ(β h) is −β σ(−β h).
    pc = torch.tensor([-10.0, -3.0], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-12.0, -1.0], dtype=torch.float64)
    refc = torch.tensor([-11.0, -3.5], dtype=torch.float64)
    refr = torch.tensor([-11.0, -2.0], dtype=torch.float64)
    preference_loss("dpo", pc, pr, refc, refr, beta=0.5).losses.sum().backward()
    h = torch.tensor([1.0 - (-1.0), 0.5 - 1.0], dtype=torch.float64)
    expected = torch.tensor([-0.5 / (1 + math.exp(0.5 * v)) for v in h.tolist()],
                            dtype=torch.float64)
    torch.testing.assert_close(pc.grad, expected)


def test_orpo_is_stable_at_extreme_mean_logps():
    pc = torch.tensor([-1e-7, -60.0, -0.5], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-80.0, -1e-9, -0.6], dtype=torch.float64)
    lengths = torch.ones(3)
    out = preference_loss("orpo", pc, pr, chosen_lengths=lengths, rejected_lengths=lengths)
    out.loss.backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(pc.grad).all()
    for i, (a, b) in enumerate(zip(pc.tolist(), pr.tolist())):
        log_odds = (a - b) - (math.log(-math.expm1(a)) - math.log(-math.expm1(b)))
        log_sig = -math.log1p(math.exp(-log_odds)) if log_odds > -30 else log_odds
        assert out.losses[i].item() == pytest.approx(-a - 0.1 * log_sig, rel=1e-12)


def test_drdpo_tends_to_mean_for_large_beta_prime_and_to_min_for_small():
    pc, pr, refc, refr, _, _ = random_batch(3, 7)
    large = preference_loss("drdpo", pc, pr, refc, refr, beta_prime=1e6)
    small = preference_loss("drdpo", pc, pr, refc, refr, beta_prime=1e-3)
    torch.testing.assert_close(large.loss, large.losses.mean(), rtol=1e-5, atol=1e-6)
    assert small.loss.item() == pytest.approx(large.losses.min().item(), abs=5e-3)


def test_reference_free_and_requirements():
    assert REFERENCE_FREE == {"simpo", "orpo"}
    for name in PREFERENCE_LOSSES:
        assert requires_reference(name) == (name not in {"simpo", "orpo"})
        assert requires_lengths(name) == (name in {"simpo", "orpo", "rpo", "ipo_mean"})
        assert requires_reference_sample(name) == (name == "xpo")
    pc, pr, _, _, lc, lr = random_batch(0, 3)
    out = preference_loss("simpo", pc, pr, chosen_lengths=lc, rejected_lengths=lr)
    assert torch.isfinite(out.loss)


def test_unknown_name_lists_valid_names():
    pc, pr, refc, refr, _, _ = random_batch(0, 2)
    with pytest.raises(ValueError) as info:
        preference_loss("dpoo", pc, pr, refc, refr)
    for name in PREFERENCE_LOSSES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="valid names"):
        requires_reference("nope")


def test_unknown_param_lists_valid_params():
    pc, pr, refc, refr, _, _ = random_batch(0, 2)
    with pytest.raises(ValueError) as info:
        preference_loss("dpo", pc, pr, refc, refr, gamma=1.0)
    message = str(info.value)
    assert "gamma" in message and "beta" in message and "epsilon" in message


@pytest.mark.parametrize("name", ["dpo", "robust", "ipo", "ipo_mean", "hinge", "rpo", "caldpo",
                                  "drdpo", "xpo"])
def test_missing_reference_raises(name):
    pc, pr, _, _, lc, lr = random_batch(0, 2)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_loss(name, pc, pr, chosen_lengths=lc, rejected_lengths=lr)


@pytest.mark.parametrize("name", ["simpo", "orpo", "rpo", "ipo_mean"])
def test_missing_lengths_raises(name):
    pc, pr, refc, refr, _, _ = random_batch(0, 2)
    with pytest.raises(ValueError, match="chosen_lengths"):
        preference_loss(name, pc, pr, refc, refr)


def test_bad_shapes_and_lengths_and_epsilon_raise():
    pc, pr, refc, refr, lc, lr = random_batch(0, 3)
    with pytest.raises(ValueError, match="shape"):
        preference_loss("dpo", pc, pr[:2], refc, refr)
    with pytest.raises(ValueError, match="positive"):
        preference_loss("simpo", pc, pr, refc, refr, lc * 0, lr)
    with pytest.raises(ValueError, match="epsilon"):
        preference_loss("robust", pc, pr, refc, refr, epsilon=0.5)


def test_xpo_without_reference_sample_raises():
    pc, pr, refc, refr, _, _ = random_batch(0, 2)
    with pytest.raises(ValueError, match="policy_ref_sample_logps"):
        preference_loss("xpo", pc, pr, refc, refr)


def test_xpo_is_dpo_plus_alpha_times_reference_sample_logp():
    """Xie et al. 2024: L = L_DPO + α·mean_b log π(ỹ_b|x_b); with α = 0 it is DPO, and the
    exploration term's gradient on log π(ỹ) is α/B per example."""
    pc, pr, refc, refr, _, _ = random_batch(4, 5)
    ps = random_sample_logps(4, 5).requires_grad_()
    dpo = preference_loss("dpo", pc, pr, refc, refr, beta=0.2)
    out = preference_loss("xpo", pc, pr, refc, refr, policy_ref_sample_logps=ps, beta=0.2,
                          alpha=0.3)
    expected = dpo.loss + 0.3 * sum(ps.tolist()) / 5
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    out.loss.backward()
    torch.testing.assert_close(ps.grad, torch.full((5,), 0.3 / 5, dtype=torch.float64))
    off = preference_loss("xpo", pc, pr, refc, refr, policy_ref_sample_logps=ps.detach(),
                          beta=0.2, alpha=0.0)
    torch.testing.assert_close(off.losses, dpo.losses, rtol=0, atol=0)


@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_ipo_sums_and_ipo_mean_averages_over_tokens(beta):
    """Azar et al. 2023 eq. 17 regresses the summed log-likelihood-ratio margin to
    1/(2β) (``ipo``); TRL's form does it on per-token means (``ipo_mean``, equal to
    ``ipo`` with loss.average_log_prob=true). Log-probs built from known token
    log-probs, so sums and means are written out here."""
    from prefalign.config import LossConfig
    from prefalign.stages.preference_algorithm import configured_loss

    g = torch.Generator().manual_seed(11)
    lengths = {"pc": [3, 7, 1, 12], "pr": [5, 2, 9, 4]}
    tokens = {key: [(-0.1 - 3 * torch.rand(n, generator=g, dtype=torch.float64)).tolist()
                    for n in ns] for key, ns in {**lengths, "refc": lengths["pc"],
                                                 "refr": lengths["pr"]}.items()}
    sums = {key: torch.tensor([math.fsum(t) for t in rows], dtype=torch.float64)
            for key, rows in tokens.items()}
    means = {key: torch.tensor([math.fsum(t) / len(t) for t in rows], dtype=torch.float64)
             for key, rows in tokens.items()}
    summed = ((sums["pc"] - sums["refc"]) - (sums["pr"] - sums["refr"]) - 1 / (2 * beta)) ** 2
    per_token = ((means["pc"] - means["refc"]) - (means["pr"] - means["refr"])
                 - 1 / (2 * beta)) ** 2
    lc = torch.tensor(lengths["pc"], dtype=torch.float64)
    lr = torch.tensor(lengths["pr"], dtype=torch.float64)
    args = (sums["pc"], sums["pr"], sums["refc"], sums["refr"], lc, lr)
    out = preference_loss("ipo", *args, beta=beta)
    torch.testing.assert_close(out.losses, summed, rtol=1e-12, atol=1e-12)
    out = preference_loss("ipo_mean", *args, beta=beta)
    torch.testing.assert_close(out.losses, per_token, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.chosen_rewards, beta * (means["pc"] - means["refc"]))
    for config in (LossConfig(name="ipo", beta=beta, average_log_prob=True),
                   LossConfig(name="ipo_mean", beta=beta),
                   LossConfig(name="ipo_mean", beta=beta, average_log_prob=True)):
        out = configured_loss(config, *args)[0]
        torch.testing.assert_close(out.losses, per_token, rtol=1e-12, atol=1e-12)
    out = configured_loss(LossConfig(name="ipo", beta=beta), *args)[0]
    torch.testing.assert_close(out.losses, summed, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(summed, per_token)


def test_loss_config_keys_come_from_the_signatures():
    from pydantic import ValidationError

    from prefalign.config import LossConfig, PhaseConfig
    from prefalign.config.loss_table import BUILTIN_LOSS_PARAMETERS
    from prefalign.losses.preference import loss_parameter_table

    table = loss_parameter_table()
    assert table == BUILTIN_LOSS_PARAMETERS  # the torch-free copy --help reads
    for name, defaults in DEFAULTS.items():
        assert {key: table[key][name][0] for key in defaults} == defaults
        assert LossConfig(name=name, **defaults).params() == defaults
    with pytest.raises(ValidationError, match="did you mean 'beta'"):
        LossConfig(name="dpo", bta=0.2)
    with pytest.raises(ValidationError, match="greater than 0"):
        LossConfig(name="dpo", beta=-1)
    with pytest.raises(ValidationError, match="did you mean 'dpo'"):
        LossConfig(name="dpoo")
    phase = PhaseConfig.model_validate({"loss": {"beta": 0.3}})
    assert phase.loss.name is None and phase.loss.params() == {"beta": 0.3}
    assert LossConfig(name="simpo", beta=1.0).updated(phase.loss).params() == {"beta": 0.3}


def test_dpo_help_lists_every_loss_parameter():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "prefalign", "dpo", "--help"],
                         capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert out.returncode == 0
    for key in ["loss.name ['dpo']", "loss.beta (default dpo 0.1", "simpo 2.0", "loss.gamma",
                "loss.lam", "loss.alpha", "xpo 1e-05", "loss.beta_prime", "loss.center_logits",
                "loss.epsilon", "loss.average_log_prob [False]"]:
        assert key in out.stdout, key
