"""GRPO and RLOO: critic-free policy gradients with a baseline from the other samples.

Both sample ``G`` completions per prompt and score them, ``r [P, G]``.

GRPO (Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300): the advantage of
every token of completion ``j`` is ``A_j = (r_j − mean(r)) / (std(r) + ε)``
within its group (``policy.normalize_std=false`` keeps only the mean: Dr. GRPO,
Liu et al. 2025, arXiv 2503.20783). Loss, per micro-batch::

    L = PPO-clip(ρ_t, A) + β · mean_t k(log π_θ − log π_ref)

with ``ρ_t = π_θ(y_t)/π_old(y_t)`` and ``k`` the per-token KL estimator
(``kl.estimator``, k3 by default, as in the paper).

RLOO (Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740): the KL
penalty goes into the reward, ``r_j ← r_j − β·Σ_t (log π_old − log π_ref)``,
and ``A_j = r_j − mean_{k≠j} r_k`` (leave-one-out); the same clipped
objective, which with one update per rollout is exactly REINFORCE with that
baseline (ρ = 1, ∇ρ = ∇log π).

Shapes: rewards ``[N = P·G]`` grouped by prompt; advantages ``[N]``, one per
sequence, broadcast over its tokens.
"""

from __future__ import annotations

import torch

from prefalign.losses.policy import grpo_advantages, masked_mean, policy_clip_loss, rloo_advantages
from prefalign.stages.online.rollout_algorithm import (
    Rollout,
    RolloutAlgorithm,
    sequence_kl,
    token_kl_term,
)


class GRPOAlgorithm(RolloutAlgorithm):
    """Group-normalised advantages, clipped ratio, k-estimator KL in the loss."""

    def prepare(self, rollout: Rollout) -> dict[str, float]:
        grouped = rollout.rewards.view(-1, self.group)
        rollout.advantages = grpo_advantages(
            grouped, normalize_std=self.setup.cfg.policy.normalize_std).reshape(-1)
        solved = (grouped.std(dim=1, correction=0) > 0).float().mean()
        return {"rollout/groups_with_signal": float(solved)}

    def _policy_loss(self, rollout: Rollout, rows: list[int], batch: dict[str, torch.Tensor],
                     logps: torch.Tensor, old_logps: torch.Tensor):
        p = self.setup.cfg.policy
        mask = batch["completion_mask"]
        advantages = rollout.advantages[rows].to(logps.device, logps.dtype)
        return policy_clip_loss(logps, old_logps, advantages, mask, p.clip_eps,
                                p.clip_eps_high, p.reduction)

    def loss(self, rollout, rows, batch, logps, values, old_logps):
        cfg = self.setup.cfg
        mask = batch["completion_mask"]
        loss, stats = self._policy_loss(rollout, rows, batch, logps, old_logps)
        metrics = {"policy/clip_frac": float(stats["clip_frac"]),
                   "policy/approx_kl": float(stats["approx_kl"])}
        ref = None if rollout.ref_logps is None else \
            rollout.ref_logps[rows, :logps.shape[1]].to(logps.device)
        kl_term = token_kl_term(logps, ref, mask, cfg.kl.estimator)
        if kl_term is not None:
            loss = loss + cfg.kl.coef * kl_term
            metrics["kl/token"] = float(kl_term.detach())
            metrics["kl/ref"] = float(sequence_kl(logps.detach(), ref, mask).mean())
        metrics["policy/entropy"] = float(-masked_mean(logps.detach(), mask))
        return loss, metrics


class RLOOAlgorithm(GRPOAlgorithm):
    """Leave-one-out baseline over K samples; the KL penalty is part of the reward."""

    @property
    def needs_old(self) -> bool:
        return super().needs_old or self.needs_reference

    def prepare(self, rollout: Rollout) -> dict[str, float]:
        rewards = rollout.rewards
        metrics = {}
        if rollout.ref_logps is not None:
            mask = rollout.tensors["completion_mask"].float()
            kl = sequence_kl(rollout.old_logps, rollout.ref_logps, mask)
            rewards = rewards - self.setup.cfg.kl.coef * kl
            metrics["reward/with_kl_penalty"] = float(rewards.mean())
        rollout.advantages = rloo_advantages(rewards.view(-1, self.group)).reshape(-1)
        return metrics

    def loss(self, rollout, rows, batch, logps, values, old_logps):
        loss, stats = self._policy_loss(rollout, rows, batch, logps, old_logps)
        mask = batch["completion_mask"]
        metrics = {"policy/clip_frac": float(stats["clip_frac"]),
                   "policy/approx_kl": float(stats["approx_kl"]),
                   "policy/entropy": float(-masked_mean(logps.detach(), mask))}
        return loss, metrics
