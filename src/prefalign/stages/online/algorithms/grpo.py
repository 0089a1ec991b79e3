"""GRPO: group-normalised advantages, the clipped ratio, and the KL in the loss.

Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in
Open Language Models", arXiv 2402.03300. For the ``G`` completions of a prompt
with rewards ``r``, every token of completion ``j`` has the advantage

    A_j = (r_j − mean(r)) / (std(r) + ε)

(``policy.normalize_std=false`` keeps only the mean, as Dr. GRPO does: Liu et al.
2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783; with
``policy.reduction=constant`` it is Dr. GRPO's loss too). Loss per micro-batch:

    L = reduce_t PPO-clip(ρ_t, A) + β · reduce_t k(log π_θ − log π_ref)

with ``ρ_t = π_θ(y_t)/π_old(y_t)``, ``k`` the per-token KL estimator
(``kl.estimator``, k3 as in the paper) and ``reduce`` the same token reduction
for both terms (``policy.reduction``). Shapes: rewards ``[N = P·G]`` grouped by
prompt; advantages ``[N]``, one per sequence, broadcast over its tokens.

With ``policy.process_reward`` (a process reward model) the advantages are
per token instead, from step rewards (DeepSeekMath §4.1.3, process
supervision): ``prefalign.losses.process.process_advantages``.
"""

from __future__ import annotations

from prefalign.config.online import OnlineConfig
from prefalign.losses.kl import sequence_kl, token_kl_term
from prefalign.losses.policy import grpo_advantages
from prefalign.losses.process import process_advantages
from prefalign.stages.online.registry import OnlineAlgorithm, register_online_algorithm
from prefalign.stages.online.rollouts import LossInputs, Rollout, clipped_policy_loss


def advantages(rollout: Rollout, cfg: OnlineConfig) -> dict[str, float]:
    if rollout.step_rewards is not None:
        rewards, ends = rollout.step_rewards
        rollout.advantages = process_advantages(rewards, ends, rollout.group,
                                                rollout.mask.shape[1])
        return {"rollout/step_reward_mean": sum(map(sum, rewards)) / sum(map(len, rewards)),
                "rollout/steps_mean": sum(map(len, rewards)) / len(rewards)}
    grouped = rollout.rewards.view(-1, rollout.group)
    rollout.advantages = grpo_advantages(grouped,
                                         normalize_std=cfg.policy.normalize_std).reshape(-1)
    solved = (grouped.std(dim=1, correction=0) > 0).float().mean()
    return {"rollout/groups_with_signal": float(solved)}


def loss(x: LossInputs, cfg: OnlineConfig):
    total, metrics = clipped_policy_loss(x, cfg)
    if x.ref_logps is not None:
        kl_term = token_kl_term(x.logps, x.ref_logps, x.mask, cfg.kl.estimator,
                                cfg.policy.reduction, cfg.rollout.max_new_tokens)
        total = total + x.kl_coef * kl_term
        metrics["kl/token"] = float(kl_term.detach())
        metrics["kl/ref"] = float(sequence_kl(x.logps.detach(), x.ref_logps, x.mask).mean())
    return total, metrics


GRPO = register_online_algorithm(OnlineAlgorithm(
    name="grpo",
    summary="GRPO: group-normalised advantages over n samples per prompt, clipped ratio "
            "(Dr. GRPO with policy.normalize_std=false policy.reduction=constant).",
    advantages=advantages, loss=loss, kl="loss", min_group=2,
    group_reason="GRPO normalises rewards within a group"))
