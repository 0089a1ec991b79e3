"""Online policy-gradient pieces: advantages (GRPO, RLOO, REINFORCE++, GAE), returns,
the PPO clipped surrogate and its token reductions, the clipped value loss.

The KL pieces (estimators, KL terms, KL-shaped rewards, controllers) are in
``prefalign.losses.kl``.

Token-level tensors are ``[B, T]`` with a 0/1 ``mask`` marking the completion
tokens that count; masked positions never contribute to a loss or a statistic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prefalign.losses.preference import LossArgumentError


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


def reinforce_pp_advantages(returns: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """REINFORCE++ advantages: the token returns normalised over the whole batch,
    ``A_t = (G_t − mean_B G) / sqrt(var_B G + eps)``, with the mean and (population)
    variance taken over every completion token of the batch (global, not per prompt).

    ``G_t`` is the KL-penalised reward-to-go (``reward_to_go`` of
    ``losses.kl.kl_shaped_rewards``); with γ = 1, ``G_t = R − β·Σ_{i≥t} KL_i`` where
    ``KL_i = log π_old(y_i) − log π_ref(y_i)``. Normalising over the global batch
    rather than one prompt's group is the paper's point: an unbiased baseline.

    Paper: Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning
    Large Language Models", arXiv 2501.03262. Shapes: ``returns``, ``mask``
    ``[B, T]`` → ``[B, T]`` (0 off the mask).
    """
    if int(mask.bool().sum()) < 2:
        raise LossArgumentError("reinforce_pp_advantages needs at least 2 completion "
                                "tokens in the batch to normalise over")
    return masked_whiten(returns, mask, eps)


@torch.no_grad()
def reward_to_go(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Discounted returns over the masked tokens of each sequence,
    ``G_t = r_t + γ·G_{t'}`` with ``t'`` the next valid position (``G = 0`` past the
    last one); masked positions contribute nothing and get ``G = 0``.

    GAE's return without a critic (V = 0, λ = 1). Paper: Williams 1992, "Simple
    statistical gradient-following algorithms for connectionist reinforcement
    learning" (REINFORCE). Shapes: ``rewards``, ``mask`` ``[B, T]`` → ``[B, T]``.
    """
    valid = mask.bool()
    returns = torch.zeros_like(rewards)
    following = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        here = valid[:, t]
        value = rewards[:, t] + gamma * following
        returns[:, t] = torch.where(here, value, torch.zeros_like(value))
        following = torch.where(here, value, following)
    return returns


REDUCTIONS = ("token", "sequence", "constant")


def reduce_tokens(per_token: Tensor, mask: Tensor, reduction: str = "token",
                  max_length: int | None = None) -> Tensor:
    """A per-token loss ``x`` ``[B, T]`` reduced to a scalar over the masked tokens.

    * ``token``: ``Σ_{b,t} m·x / Σ_{b,t} m`` — every token weighs the same (DAPO);
    * ``sequence``: ``(1/B') Σ_b (Σ_t m·x / Σ_t m)`` — each sequence's token mean,
      then the mean over the ``B'`` sequences with tokens (GRPO, DeepSeekMath);
    * ``constant``: ``Σ_{b,t} m·x / (B · L)`` with ``L = max_length`` the generation
      budget — no length normalisation, so long and short answers are not reweighted
      (Dr. GRPO: Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical
      Perspective", arXiv 2503.20783).
    """
    if reduction == "token":
        return masked_mean(per_token, mask)
    if reduction == "sequence":
        has_tokens = mask.bool().any(dim=-1)
        return masked_mean(masked_mean(per_token, mask, dim=-1), has_tokens)
    if reduction == "constant":
        if max_length is None or max_length <= 0:
            raise LossArgumentError("reduction 'constant' needs max_length > 0 (the "
                                    "generation budget, rollout.max_new_tokens)")
        total = torch.where(mask.bool(), per_token, torch.zeros_like(per_token)).sum()
        return total / (per_token.shape[0] * max_length)
    raise LossArgumentError(f"unknown reduction '{reduction}'; valid: {', '.join(REDUCTIONS)}")


def policy_clip_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                     clip_eps: float = 0.2, clip_eps_high: float | None = None,
                     reduction: str = "token", max_length: int | None = None
                     ) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate objective, as a loss to minimise.

    Per token, with ``ρ = exp(logp − old_logp)``::

        loss_t = −min(ρ·A, clip(ρ, 1 − ε, 1 + ε_high)·A)

    ``ε_high`` defaults to ``ε`` (set it larger for DAPO's clip-higher); ``reduction``
    and ``max_length`` as in ``reduce_tokens``.
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
    loss = reduce_tokens(per_token, mask, reduction, max_length)
    with torch.no_grad():
        clip_frac = masked_mean((clipped < unclipped).to(logp.dtype), mask)
        approx_kl = masked_mean(ratio - 1.0 - log_ratio, mask)
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
