"""RLOO: REINFORCE with a leave-one-out baseline; the KL penalty is in the reward.

Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization
for Learning from Human Feedback in LLMs", arXiv 2402.14740. For the ``K``
completions of a prompt, the sequence KL is subtracted from each reward and each
completion's baseline is the mean of the others::

    r_j ← r_j − β·Σ_t (log π_old(y_t) − log π_ref(y_t))
    A_j = r_j − (1/(K−1))·Σ_{k≠j} r_k

The loss is the clipped surrogate, which with one update per rollout is exactly
REINFORCE with that baseline (ρ = 1, ∇ρ = ∇log π). Shapes: rewards ``[N = P·K]``
grouped by prompt; advantages ``[N]``.
"""

from __future__ import annotations

from prefalign.config.online import OnlineConfig
from prefalign.losses.kl import sequence_kl
from prefalign.losses.policy import rloo_advantages
from prefalign.stages.online.registry import OnlineAlgorithm, register_online_algorithm
from prefalign.stages.online.rollouts import Rollout, clipped_policy_loss


def advantages(rollout: Rollout, cfg: OnlineConfig) -> dict[str, float]:
    rewards, metrics = rollout.rewards, {}
    if rollout.ref_logps is not None:
        kl = sequence_kl(rollout.old_logps, rollout.ref_logps, rollout.mask)
        rewards = rewards - rollout.kl_coef * kl
        metrics["reward/with_kl_penalty"] = float(rewards.mean())
    rollout.advantages = rloo_advantages(rewards.view(-1, rollout.group)).reshape(-1)
    return metrics


RLOO = register_online_algorithm(OnlineAlgorithm(
    name="rloo",
    summary="RLOO: REINFORCE with a leave-one-out baseline over k samples per prompt; the "
            "sequence KL is subtracted from each reward.",
    advantages=advantages, loss=clipped_policy_loss, kl="reward", min_group=2,
    group_reason="RLOO's baseline leaves one sample out"))
