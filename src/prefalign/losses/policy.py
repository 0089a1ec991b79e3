"""Online policy-gradient pieces: advantages (GRPO, RLOO, REINFORCE++, GAE), the PPO
clipped surrogate, the clipped value loss, per-token KL estimators and KL controllers.

Token-level tensors are ``[B, T]`` with a 0/1 ``mask`` marking the completion
tokens that count; masked positions never contribute to a loss or a statistic.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from prefalign.losses.preference import LossArgumentError

KLKind = Literal["k1", "k2", "k3"]


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is true (over ``dim``, or all).

    An empty selection gives 0, not NaN. Values at masked-out positions are
    ignored even when they are not finite. Shapes: ``x`` and ``mask`` alike.
    """
    mask = mask.bool()
    total = torch.where(mask, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / mask.sum().clamp(min=1)
    return total.sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x − mean) / sqrt(var + eps)`` with the mean and (population) variance
    taken over the masked positions; masked-out positions are 0. Shapes: any, alike.
    """
    mean = masked_mean(x, mask)
    variance = masked_mean((x - mean) ** 2, mask)
    whitened = (x - mean) * torch.rsqrt(variance + eps)
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def grpo_advantages(rewards: Tensor, normalize_std: bool = True, eps: float = 1e-6) -> Tensor:
    """Group-relative advantages: ``A_ij = (r_ij − mean_j r_ij) / (std_j r_ij + eps)``.

    Each row holds the rewards of the G completions sampled for one prompt. The
    standard deviation is the population one (divisor G): DeepSeekMath writes
    ``std(r)`` of the group ``r = {r_1..r_G}`` itself, with no Bessel correction.
    ``normalize_std=False`` keeps only the mean baseline, as Dr. GRPO does to
    remove the bias towards groups of low variance.

    Papers: Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical
    Reasoning in Open Language Models", arXiv 2402.03300; Liu et al. 2025,
    "Understanding R1-Zero-Like Training: A Critical Perspective", arXiv 2503.20783.
    Shapes: ``rewards`` ``[P, G]`` → ``[P, G]``.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise LossArgumentError(
            f"grpo_advantages needs rewards [P, G] with group size G >= 2, "
            f"got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, correction=0) + eps)


def rloo_advantages(rewards: Tensor) -> Tensor:
    """REINFORCE leave-one-out: ``A_ik = r_ik − (1/(K−1))·Σ_{j≠k} r_ij``.

    Paper: Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
    Optimization for Learning from Human Feedback in LLMs", arXiv 2402.14740.
    Shapes: ``rewards`` ``[P, K]`` (K samples per prompt, K ≥ 2) → ``[P, K]``.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise LossArgumentError(
            f"rloo_advantages needs rewards [P, K] with K >= 2 samples per prompt, "
            f"got shape {tuple(rewards.shape)}")
    samples = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)
    return rewards - others_mean


def reinforce_pp_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """REINFORCE++ advantages: returns normalised across the whole batch,
    ``A_i = (r_i − mean_B r) / (std_B r + eps)`` (population std).

    Paper: Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning
    Large Language Models", arXiv 2501.03262. Shapes: ``rewards`` ``[N]`` → ``[N]``.
    """
    if rewards.dim() != 1 or rewards.numel() < 2:
        raise LossArgumentError(
            f"reinforce_pp_advantages needs rewards [N] with N >= 2, "
            f"got shape {tuple(rewards.shape)}")
    return (rewards - rewards.mean()) / (rewards.std(correction=0) + eps)


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k1") -> Tensor:
    """Per-token estimators of KL(π‖ref) from tokens sampled from π.

    With ``d = logp − ref_logp``: ``k1 = d`` (unbiased, high variance),
    ``k2 = ½·d²`` (biased, low variance), ``k3 = e^{−d} + d − 1`` (unbiased,
    non-negative, low variance).

    Reference: Schulman 2020, "Approximating KL Divergence",
    http://joschu.net/blog/kl-approx.html. Shapes: any, alike → same shape.
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    if kind == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1.0
    raise LossArgumentError(f"unknown KL estimator '{kind}'; valid: k1, k2, k3")


def _reduce(per_token: Tensor, mask: Tensor, reduction: str) -> Tensor:
    if reduction == "token":
        return masked_mean(per_token, mask)
    if reduction == "sequence":
        has_tokens = mask.bool().any(dim=-1)
        return masked_mean(masked_mean(per_token, mask, dim=-1), has_tokens)
    raise LossArgumentError(f"unknown reduction '{reduction}'; valid: token, sequence")


def policy_clip_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                     clip_eps: float = 0.2, clip_eps_high: float | None = None,
                     reduction: str = "token") -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate objective, as a loss to minimise.

    Per token, with ``ρ = exp(logp − old_logp)``::

        loss_t = −min(ρ·A, clip(ρ, 1 − ε, 1 + ε_high)·A)

    ``ε_high`` defaults to ``ε`` (set it larger for DAPO's clip-higher). Reduction
    ``"token"``: sum over all completion tokens / their count; ``"sequence"``: the
    mean over sequences of each sequence's token mean.
    Metrics (detached): ``clip_frac``, the fraction of tokens where the clipped
    term is the active one (its gradient is zero), and ``approx_kl``, the k3
    estimate of KL(π_old‖π): mean of ``ρ − 1 − log ρ``.

    Paper: Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
    arXiv 1707.06347. Shapes: ``logp``, ``old_logp``, ``mask`` ``[B, T]``;
    ``advantages`` ``[B, T]`` or ``[B]`` (one per sequence); scalar loss.
    """
    if advantages.dim() == logp.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    high = clip_eps if clip_eps_high is None else clip_eps_high
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    loss = _reduce(per_token, mask, reduction)
    with torch.no_grad():
        clip_frac = masked_mean((clipped < unclipped).to(logp.dtype), mask)
        approx_kl = masked_mean(kl_penalty(old_logp, logp, "k3"), mask)
    return loss, {"clip_frac": clip_frac, "approx_kl": approx_kl}


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
               clip_eps: float = 0.2) -> Tensor:
    """Clipped value loss: masked token mean of
    ``½·max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²)``.

    Paper: Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
    arXiv 1707.06347 (value clipping as in its reference implementation).
    Shapes: all ``[B, T]``; scalar out.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    per_token = 0.5 * torch.maximum((values - returns) ** 2, (clipped_values - returns) ** 2)
    return masked_mean(per_token, mask)


@torch.no_grad()
def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised Advantage Estimation over the masked tokens of each sequence.

    Backwards over the valid positions ``t`` of a sequence, with ``t'`` the next
    valid position (``V_{t'} = 0`` and ``A_{t'} = 0`` past the last one)::

        δ_t = r_t + γ·V_{t'} − V_t
        A_t = δ_t + γ·λ·A_{t'}
        R_t = A_t + V_t

    Masked positions contribute nothing (their rewards and values are ignored)
    and get ``A = R = 0``.

    Paper: Schulman et al. 2016, "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", arXiv 1506.02438.
    Shapes: ``rewards``, ``values``, ``mask`` ``[B, T]`` → advantages, returns ``[B, T]``.
    """
    valid = mask.bool()
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        here = valid[:, t]
        advantages[:, t] = torch.where(here, advantage, torch.zeros_like(advantage))
        next_value = torch.where(here, values[:, t], next_value)
        next_advantage = torch.where(here, advantage, next_advantage)
    returns = torch.where(valid, advantages + values, torch.zeros_like(values))
    return advantages, returns


class FixedKLController:
    """A constant KL coefficient β."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        """Keep β unchanged; return it."""
        return self.value


class AdaptiveKLController:
    """Proportional controller that steers the measured KL towards a target.

    ``e = clip(KL / target − 1, −0.2, 0.2)``; ``β ← β·(1 + e·n_steps / horizon)``.

    Paper: Ziegler et al. 2019, "Fine-Tuning Language Models from Human
    Preferences", arXiv 1909.08593.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise LossArgumentError(
                f"adaptive KL controller needs target > 0 and horizon > 0, "
                f"got target={target}, horizon={horizon}")
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move β after ``n_steps`` samples at measured KL ``current_kl``; return it."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
