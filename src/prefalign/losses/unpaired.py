"""Unpaired preference loss: KTO, which learns from completions labelled good or bad alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prefalign.losses.preference import LossArgumentError


@dataclass
class KTOLossOutput:
    """Result of :func:`kto_loss`.

    ``loss``: scalar batch mean. ``losses``: ``[B]`` per example.
    ``rewards``: ``[B]`` implicit rewards ``β·(π − ref)``, detached.
    ``kl``: scalar reference point ``z = max(0, kl)``, detached.
    """

    loss: Tensor
    losses: Tensor
    rewards: Tensor
    kl: Tensor


def kto_kl_estimate(policy_mismatched_logps: Tensor, ref_mismatched_logps: Tensor) -> Tensor:
    """Batch estimate of KL(π‖ref) used as KTO's reference point.

    ``z = max(0, mean_B(π(y'|x) − ref(y'|x)))``, detached, where ``y'`` are
    completions paired with the wrong prompts (shifted within the batch).

    Paper: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
    Optimization", arXiv 2402.01306. Shapes: inputs ``[B]``; output scalar.
    """
    return (policy_mismatched_logps - ref_mismatched_logps).mean().clamp(min=0).detach()


def kto_loss(policy_logps: Tensor, ref_logps: Tensor, labels: Tensor, kl: Tensor | float,
             beta: float = 0.1, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> KTOLossOutput:
    """Kahneman-Tversky Optimization.

    With ``r = π − ref`` (sequence log-prob sums) and ``z = max(0, kl)`` detached::

        desirable   (label true):  w_D · (1 − σ(β·(r − z)))
        undesirable (label false): w_U · (1 − σ(β·(z − r)))

    ``loss`` is the batch mean; ``kl`` is the batch estimate from mismatched
    prompt/completion pairs (:func:`kto_kl_estimate`).

    Paper: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
    Optimization", arXiv 2402.01306.
    Shapes: ``policy_logps``, ``ref_logps``, ``labels`` (bool) ``[B]``; ``kl`` scalar.
    """
    if policy_logps.shape != ref_logps.shape or policy_logps.shape != labels.shape:
        raise LossArgumentError(
            f"kto: policy_logps {tuple(policy_logps.shape)}, ref_logps "
            f"{tuple(ref_logps.shape)} and labels {tuple(labels.shape)} must share shape [B]")
    log_ratio = policy_logps - ref_logps
    z = torch.as_tensor(kl, dtype=log_ratio.dtype, device=log_ratio.device).clamp(min=0).detach()
    desirable = labels.bool()
    losses = torch.where(
        desirable,
        desirable_weight * (1.0 - torch.sigmoid(beta * (log_ratio - z))),
        undesirable_weight * (1.0 - torch.sigmoid(beta * (z - log_ratio))),
    )
    return KTOLossOutput(loss=losses.mean(), losses=losses,
                         rewards=(beta * log_ratio).detach(), kl=z)
