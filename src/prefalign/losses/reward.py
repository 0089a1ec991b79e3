"""Reward-model losses: Bradley-Terry on pairs (with margin and centring), regression on scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from prefalign.losses.preference import LossArgumentError


@dataclass
class RewardLossOutput:
    """Result of :func:`bradley_terry_loss`.

    ``loss``: scalar mean. ``losses``: ``[B]`` per pair.
    ``accuracy``: scalar fraction of pairs with ``r_c > r_r``, detached.
    """

    loss: Tensor
    losses: Tensor
    accuracy: Tensor


def bradley_terry_loss(chosen_rewards: Tensor, rejected_rewards: Tensor,
                       margin: Tensor | None = None,
                       center_coef: float = 0.0) -> RewardLossOutput:
    """Bradley-Terry pairwise loss with an optional margin and reward centring.

    ``loss_i = −log σ(r_c − r_r − m_i) + c·(r_c + r_r)²``. The margin ``m`` asks the
    chosen reward to exceed the rejected one by at least ``m`` (Touvron et al. 2023,
    "Llama 2", arXiv 2307.09288); the centring term with coefficient ``c`` keeps
    rewards near zero mean.

    Papers: Bradley & Terry 1952, "Rank Analysis of Incomplete Block Designs";
    Ouyang et al. 2022, "Training language models to follow instructions with human
    feedback", arXiv 2203.02155; centring from Eisenstein et al. 2023, "Helping or
    Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward Hacking",
    arXiv 2312.09244. Shapes: rewards and ``margin`` ``[B]``; ``losses`` ``[B]``.
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise LossArgumentError(
            f"bradley_terry: chosen {tuple(chosen_rewards.shape)} and rejected "
            f"{tuple(rejected_rewards.shape)} rewards must share shape [B]")
    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin
    losses = -F.logsigmoid(difference)
    if center_coef:
        losses = losses + center_coef * (chosen_rewards + rejected_rewards) ** 2
    accuracy = (chosen_rewards > rejected_rewards).to(chosen_rewards.dtype).mean().detach()
    return RewardLossOutput(loss=losses.mean(), losses=losses, accuracy=accuracy)


def regression_loss(predicted: Tensor, scores: Tensor, mean: float | Tensor,
                    std: float | Tensor) -> Tensor:
    """Mean squared error against normalised scores: ``mean_B((p − (s − μ)/σ)²)``.

    ``mean`` and ``std`` are the score statistics of the training set, so the head
    learns scores on a unit scale. Shapes: ``predicted``, ``scores`` ``[B]``; scalar out.
    """
    if predicted.shape != scores.shape:
        raise LossArgumentError(
            f"regression: predicted {tuple(predicted.shape)} and scores "
            f"{tuple(scores.shape)} must share shape [B]")
    if float(std) <= 0:
        raise LossArgumentError(f"regression: std must be positive, got {float(std)}")
    target = (scores.to(predicted.dtype) - mean) / std
    return torch.mean((predicted - target) ** 2)
