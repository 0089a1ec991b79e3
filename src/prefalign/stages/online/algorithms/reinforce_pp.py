"""REINFORCE++: critic-free PPO with the KL penalty folded into the token rewards and
advantages normalised over the global batch.

Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large
Language Models", arXiv 2501.03262. Per completion token ``t``, the reward is
the k1 KL penalty and, at the last token, the score ``R``; the return is the
reward-to-go (γ = 1 in the paper), and the advantage is the return normalised
over every completion token of the rollout (the global batch, not one prompt's
group)::

    r_t = −β·(log π_old(y_t) − log π_ref(y_t)) + 1[t = last]·R
    G_t = Σ_{i ≥ t} γ^{i−t}·r_i          (γ = 1: G_t = R − β·Σ_{i≥t} KL_i)
    A_t = (G_t − mean_batch G) / std_batch G

The loss is PPO's clipped surrogate on ``A_t``, with no critic and no KL term.
Any number of samples per prompt (``rollout.num_samples ≥ 1``).
Shapes: token tensors ``[N, T]``, zero off the completion; ``R`` ``[N]``.
"""

from __future__ import annotations

from pydantic import Field

from prefalign.config import StrictModel
from prefalign.config.online import OnlineConfig
from prefalign.losses.kl import kl_shaped_rewards
from prefalign.losses.policy import masked_mean, reinforce_pp_advantages, reward_to_go
from prefalign.stages.online.registry import OnlineAlgorithm, register_online_algorithm
from prefalign.stages.online.rollouts import Rollout, clipped_policy_loss


class ReinforcePPSettings(StrictModel):
    """REINFORCE++ specifics."""

    gamma: float = Field(1.0, gt=0, le=1, description="Discount γ of the reward-to-go "
                         "(1 in the paper).")


def advantages(rollout: Rollout, cfg: OnlineConfig) -> dict[str, float]:
    mask = rollout.mask
    rewards = kl_shaped_rewards(rollout.rewards, rollout.old_logps, rollout.ref_logps, mask,
                                rollout.kl_coef)
    returns = reward_to_go(rewards, mask, cfg.reinforce_pp.gamma)
    rollout.advantages = reinforce_pp_advantages(returns, mask)
    return {"reward/shaped": float((rewards * mask).sum(-1).mean()),
            "return/mean": float(masked_mean(returns, mask))}


REINFORCE_PP = register_online_algorithm(OnlineAlgorithm(
    name="reinforce-pp",
    summary="REINFORCE++: per-token KL penalty in the reward, reward-to-go returns "
            "normalised over the whole batch, clipped ratio, no critic (Hu 2025).",
    advantages=advantages, loss=clipped_policy_loss, settings=ReinforcePPSettings,
    kl="reward"))
