"""PPO for language models with a KL-penalised reward (Ouyang et al. 2022 style).

Per completion token ``t`` of a sampled sequence, the reward is the KL penalty
and, at the last token, the reward function's score ``R``::

    r_t = −β·(log π_old(y_t) − log π_ref(y_t)) + 1[t = last]·R

A value head on the policy backbone (``PolicyModel(value_head=True)``) gives
``V_t``; GAE (Schulman et al. 2016) turns ``r`` and ``V`` into advantages ``A_t``
(whitened over all the rollout's completion tokens when
``ppo.whiten_advantages``) and returns ``R_t = A_t + V_t``. The loss of a
micro-batch is::

    L = PPO-clip(ρ_t, A_t) + c_v · ½·max((V − R)², (clip(V, V_old ± ε_v) − R)²)

(Schulman et al. 2017). β follows Ziegler et al.'s adaptive controller when
``kl.adaptive`` (the rollout machinery's). Paper: Ouyang et al. 2022, "Training
language models to follow instructions with human feedback", arXiv 2203.02155.
Shapes: token tensors ``[N, T]``, zero off the completion; ``R`` ``[N]``.
"""

from __future__ import annotations

from pydantic import Field

from prefalign.config import StrictModel
from prefalign.config.online import OnlineConfig
from prefalign.losses.kl import kl_shaped_rewards
from prefalign.losses.policy import gae, masked_mean, masked_whiten, value_loss
from prefalign.stages.online.registry import OnlineAlgorithm, register_online_algorithm
from prefalign.stages.online.rollouts import LossInputs, Rollout, clipped_policy_loss


class PPOSettings(StrictModel):
    """PPO specifics: value head and GAE."""

    gamma: float = Field(1.0, gt=0, le=1, description="Discount γ of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")
    value_clip: float = Field(0.2, gt=0, description="Clip range of the value loss.")
    whiten_advantages: bool = Field(True, description="Whiten the advantages over all "
                                    "completion tokens of each rollout (mean 0, variance 1).")


def advantages(rollout: Rollout, cfg: OnlineConfig) -> dict[str, float]:
    settings, mask = cfg.ppo, rollout.mask
    rewards = kl_shaped_rewards(rollout.rewards, rollout.old_logps, rollout.ref_logps, mask,
                                rollout.kl_coef)
    advantage, returns = gae(rewards, rollout.values * mask, mask, settings.gamma,
                             settings.lam)
    if settings.whiten_advantages:
        advantage = masked_whiten(advantage, mask)
    rollout.advantages, rollout.returns = advantage, returns
    return {"reward/shaped": float((rewards * mask).sum(-1).mean()),
            "value/mean": float(masked_mean(rollout.values, mask)),
            "value/return_mean": float(masked_mean(returns, mask))}


def loss(x: LossInputs, cfg: OnlineConfig):
    policy_loss, metrics = clipped_policy_loss(x, cfg)
    critic_loss = value_loss(x.values, x.old_values, x.returns, x.mask, cfg.ppo.value_clip)
    metrics["value/loss"] = float(critic_loss.detach())
    return policy_loss + cfg.ppo.vf_coef * critic_loss, metrics


PPO = register_online_algorithm(OnlineAlgorithm(
    name="ppo",
    summary="PPO: value head, GAE, clipped policy and value losses, adaptive KL penalty "
            "(kl.adaptive).",
    advantages=advantages, loss=loss, settings=PPOSettings, needs_values=True,
    needs_reference=True, kl="reward"))
