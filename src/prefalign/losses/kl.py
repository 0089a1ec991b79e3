"""The KL anchor of the online algorithms: per-token estimators, the KL term of a
loss, KL-shaped rewards, and the controllers of the coefficient β.

``log π`` and ``log π_ref`` are per-token log-probs of sampled completion tokens,
``[B, T]``, with a 0/1 ``mask`` marking the tokens that count. Where the KL goes
is the algorithm's choice: into the loss (GRPO: ``token_kl_term``) or into the
reward (RLOO: ``sequence_kl`` per sequence; PPO, REINFORCE++:
``kl_shaped_rewards`` per token).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from prefalign.losses.policy import reduce_tokens
from prefalign.losses.preference import LossArgumentError

KLKind = Literal["k1", "k2", "k3"]


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


def sequence_kl(logps: Tensor, ref_logps: Tensor, mask: Tensor) -> Tensor:
    """``Σ_t (log π − log π_ref)`` per sequence: the k1 estimate of the sequence KL
    ``KL(π(·|x) ‖ π_ref(·|x))`` from one sample. Shapes: ``[B, T]`` → ``[B]``.
    """
    return ((logps - ref_logps) * mask).sum(-1)


def token_kl_term(logps: Tensor, ref_logps: Tensor, mask: Tensor, kind: KLKind = "k3",
                  reduction: str = "token", max_length: int | None = None) -> Tensor:
    """The KL term of a loss: the per-token estimator ``k(log π − log π_ref)`` reduced
    like the policy loss it is added to (``reduce_tokens``), so that
    ``L = L_clip + β·KL`` weighs both terms' tokens the same way.

    Paper: Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300 (GRPO's
    ``β·D_KL`` with the k3 estimator). Shapes: ``[B, T]`` → scalar.
    """
    return reduce_tokens(kl_penalty(logps, ref_logps, kind), mask, reduction, max_length)


def last_token_rewards(scores: Tensor, mask: Tensor) -> Tensor:
    """``[B, T]`` zeros with ``scores[b]`` at the last completion token of row ``b``
    (rows without tokens stay 0). Shapes: ``scores`` ``[B]``, ``mask`` ``[B, T]``."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, -1).max(dim=-1).values
    out = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
    rows = torch.arange(mask.shape[0], device=mask.device)
    has_tokens = last >= 0
    out[rows[has_tokens], last[has_tokens]] = scores[has_tokens]
    return out


def kl_shaped_rewards(scores: Tensor, old_logps: Tensor, ref_logps: Tensor | None,
                      mask: Tensor, beta: float) -> Tensor:
    """Per-token rewards with the KL penalty folded in::

        r_t = −β·(log π_old(y_t) − log π_ref(y_t)) + 1[t = last]·R

    (0 off the mask; no penalty without a reference). Papers: Ouyang et al. 2022,
    "Training language models to follow instructions with human feedback",
    arXiv 2203.02155; Hu 2025, "REINFORCE++", arXiv 2501.03262.
    Shapes: ``scores`` ``[B]``, the rest ``[B, T]`` → ``[B, T]``.
    """
    rewards = last_token_rewards(scores, mask)
    if ref_logps is None:
        return rewards
    return rewards - beta * (old_logps - ref_logps) * mask


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
