"""PPO for language models with a KL-penalised reward (Ouyang et al. 2022 style).

Per completion token ``t`` of a sampled sequence, the reward is the KL penalty
and, at the last token, the reward function's score ``R``::

    r_t = −β·(log π_old(y_t) − log π_ref(y_t)) + 1[t = last]·R

A value head on the policy backbone (``PolicyModel(value_head=True)``) gives
``V_t``; GAE (Schulman et al. 2016) turns ``r`` and ``V`` into advantages ``A_t``
(whitened over the rollout's tokens by default) and returns ``R_t = A_t + V_t``.
The loss of a micro-batch is::

    L = PPO-clip(ρ_t, A_t) + c_v · ½·max((V − R)², (clip(V, V_old ± ε_v) − R)²)

(Schulman et al. 2017). β follows the adaptive controller of Ziegler et al.
2019 when ``kl.adaptive``: after each rollout, with KL the mean sequence KL of
that rollout, ``β ← β·(1 + clip(KL/target − 1, ±0.2)·N/horizon)``, so the KL is
steered towards ``kl.target``. Paper: Ouyang et al. 2022, "Training language
models to follow instructions with human feedback", arXiv 2203.02155.

Shapes: token tensors ``[N, T]``, zero off the completion; ``R`` ``[N]``.
"""

from __future__ import annotations

import torch

from prefalign.losses.policy import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    masked_mean,
    masked_whiten,
    policy_clip_loss,
    value_loss,
)
from prefalign.stages.online.rollout_algorithm import Rollout, RolloutAlgorithm, sequence_kl


def last_token_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` zeros with ``scores[n]`` at the last completion token of row ``n``."""
    positions = torch.arange(mask.shape[1]).expand_as(mask)
    last = torch.where(mask.bool(), positions, -1).max(dim=-1).values
    out = torch.zeros(mask.shape, dtype=scores.dtype)
    rows = torch.arange(mask.shape[0])
    has_tokens = last >= 0
    out[rows[has_tokens], last[has_tokens]] = scores[has_tokens]
    return out


def kl_shaped_rewards(scores: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor,
                      mask: torch.Tensor, beta: float) -> torch.Tensor:
    """``r_t = −β·(log π_old − log π_ref)_t + 1[t = last]·score``, ``[N, T]`` (0 off the mask)."""
    return -beta * (old_logps - ref_logps) * mask + last_token_rewards(scores, mask)


class PPOAlgorithm(RolloutAlgorithm):
    """Value head, GAE, clipped policy and value losses, KL penalty in the reward."""

    needs_values = True

    def __init__(self, setup):
        super().__init__(setup)
        kl = setup.cfg.kl
        self.controller = (AdaptiveKLController(kl.coef, kl.target, kl.horizon) if kl.adaptive
                           else FixedKLController(kl.coef))

    @property
    def needs_reference(self) -> bool:
        return True

    def restore(self, rows: list[dict]) -> None:
        if rows and "kl/next_coef" in rows[-1]:
            self.controller.value = float(rows[-1]["kl/next_coef"])

    def prepare(self, rollout: Rollout) -> dict[str, float]:
        settings = self.setup.cfg.ppo
        mask = rollout.tensors["completion_mask"].float()
        beta = self.controller.value
        rewards = kl_shaped_rewards(rollout.rewards, rollout.old_logps, rollout.ref_logps, mask,
                                    beta)
        advantages, returns = gae(rewards, rollout.values * mask, mask, settings.gamma,
                                  settings.lam)
        if settings.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        rollout.advantages, rollout.returns = advantages, returns
        kl = float(sequence_kl(rollout.old_logps, rollout.ref_logps, mask).mean())
        next_beta = self.controller.update(kl, len(rollout.rows))
        return {"kl/coef": beta, "kl/next_coef": next_beta, "kl/ref": kl,
                "reward/shaped": float((rewards * mask).sum(-1).mean()),
                "value/mean": float(masked_mean(rollout.values, mask)),
                "value/return_mean": float(masked_mean(returns, mask))}

    def loss(self, rollout, rows, batch, logps, values, old_logps):
        cfg = self.setup.cfg
        mask = batch["completion_mask"]
        width, device = logps.shape[1], logps.device

        def take(tensor: torch.Tensor) -> torch.Tensor:
            return tensor[rows, :width].to(device, logps.dtype)

        policy_loss, stats = policy_clip_loss(logps, old_logps, take(rollout.advantages), mask,
                                              cfg.policy.clip_eps, cfg.policy.clip_eps_high,
                                              cfg.policy.reduction)
        critic_loss = value_loss(values, take(rollout.values), take(rollout.returns), mask,
                                 cfg.ppo.value_clip)
        loss = policy_loss + cfg.ppo.vf_coef * critic_loss
        return loss, {"policy/loss": float(policy_loss.detach()),
                      "policy/clip_frac": float(stats["clip_frac"]),
                      "policy/approx_kl": float(stats["approx_kl"]),
                      "value/loss": float(critic_loss.detach())}
