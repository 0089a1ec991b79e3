"""Loss functions: pure functions over tensors, one per paper.

``preference`` holds the paired offline losses (DPO family) behind a registry,
``unpaired`` KTO, ``reward`` the reward-model losses, and ``policy`` the online
RL pieces (advantages, PPO surrogate, value loss, KL estimators and controllers).
"""

from prefalign.losses.kl import AdaptiveKLController, FixedKLController, kl_penalty
from prefalign.losses.policy import (
    gae,
    grpo_advantages,
    masked_mean,
    masked_whiten,
    policy_clip_loss,
    reinforce_pp_advantages,
    rloo_advantages,
    value_loss,
)
from prefalign.losses.preference import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE,
    LossArgumentError,
    PreferenceLossOutput,
    loss_params,
    preference_loss,
    requires_lengths,
    requires_reference,
    requires_reference_sample,
)
from prefalign.losses.reward import RewardLossOutput, bradley_terry_loss, regression_loss
from prefalign.losses.unpaired import KTOLossOutput, kto_kl_estimate, kto_loss

__all__ = [
    "PREFERENCE_LOSSES", "REFERENCE_FREE", "AdaptiveKLController", "FixedKLController",
    "KTOLossOutput", "LossArgumentError", "PreferenceLossOutput", "RewardLossOutput",
    "bradley_terry_loss", "gae", "grpo_advantages", "kl_penalty", "kto_kl_estimate",
    "kto_loss", "loss_params", "masked_mean", "masked_whiten", "policy_clip_loss",
    "preference_loss", "regression_loss", "reinforce_pp_advantages", "requires_lengths",
    "requires_reference", "requires_reference_sample", "rloo_advantages", "value_loss",
]
