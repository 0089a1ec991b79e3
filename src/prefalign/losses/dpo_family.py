"""The DPO family: paired offline preference losses as pure functions.

Every loss takes 1-D tensors of shape ``[B]``: the policy's (and, where the
method needs one, the reference model's) log-probabilities of the chosen and the
rejected completion, each the *sum* over completion tokens (or the per-token
mean under ``loss.average_log_prob``), and, where the method works per token,
the completion lengths in tokens; XPO also takes the policy's log-probability of a
reply sampled from the reference model. Hyperparameters are keyword-only arguments
whose annotations carry their valid range (``Beta``, ``Epsilon``, ...): the
config reads names, defaults and ranges from these signatures
(``prefalign.losses.preference``). Each returns a :class:`PreferenceLossOutput`.

Notation shared by the docstrings::

    rc = πc − refc,  rr = πr − refr,  h = rc − rr          (implicit rewards, margin)
    āc = πc / Lc,    ār = πr / Lr                          (per-token mean log-probs)
    πs = log π_θ(ỹ|x), ỹ ~ π_ref(·|x)                       (XPO's reference sample)
    σ  = logistic function
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from prefalign.errors import ConfigError

Beta = Annotated[float, Field(gt=0, description="β, the strength of the KL anchor.")]
Epsilon = Annotated[float, Field(ge=0, lt=0.5, description="Label smoothing ε (cDPO, robust, "
                                 "simpo): the assumed rate of flipped labels.")]
CenterLogits = Annotated[bool, Field(description="dpo: subtract the batch mean of h.")]
Gamma = Annotated[float, Field(description="simpo: target reward margin γ.")]
Lam = Annotated[float, Field(gt=0, description="orpo: weight λ of the odds-ratio term.")]
Alpha = Annotated[float, Field(ge=0, description="rpo: weight α of the NLL term.")]
ExplorationAlpha = Annotated[float, Field(ge=0, description="xpo: weight α of the "
                                           "exploration term α·log π(ỹ|x), ỹ ~ π_ref.")]
BetaPrime = Annotated[float, Field(gt=0, description="drdpo: temperature β′ of the soft "
                                   "minimum.")]


class LossArgumentError(ConfigError, ValueError):
    """An unknown loss name, hyperparameter, or a missing input; names what is valid."""


@dataclass
class PreferenceLossOutput:
    """Result of a paired preference loss.

    ``loss``: scalar, reduced as the method defines (the batch mean unless stated).
    ``losses``: ``[B]`` per-pair losses before reduction.
    ``chosen_rewards`` / ``rejected_rewards``: ``[B]`` implicit rewards, detached.
    """

    loss: Tensor
    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def _output(losses: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor,
            loss: Tensor | None = None) -> PreferenceLossOutput:
    return PreferenceLossOutput(
        loss=losses.mean() if loss is None else loss,
        losses=losses,
        chosen_rewards=chosen_rewards.detach(),
        rejected_rewards=rejected_rewards.detach(),
    )


def _smoothed_logistic(logits: Tensor, epsilon: float) -> Tensor:
    """``−(1−ε)·log σ(x) − ε·log σ(−x)``: the logistic loss with label smoothing ε."""
    losses = -F.logsigmoid(logits)
    if epsilon:
        losses = (1.0 - epsilon) * losses - epsilon * F.logsigmoid(-logits)
    return losses


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 − eˣ)`` for ``x < 0``, accurate over the whole range.

    Uses ``log(−expm1(x))`` for ``x > −log 2`` and ``log1p(−eˣ)`` below it
    (Mächler 2012, "Accurately Computing log(1 − exp(−|a|))"). Shapes: any.
    """
    cutoff = -math.log(2.0)
    near_zero = torch.log(-torch.expm1(torch.clamp(x, min=cutoff)))
    far = torch.log1p(-torch.exp(torch.clamp(x, max=cutoff)))
    return torch.where(x > cutoff, near_zero, far)


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
             ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
             beta: Beta = 0.1, epsilon: Epsilon = 0.0,
             center_logits: CenterLogits = False) -> PreferenceLossOutput:
    """Direct Preference Optimization; with ``epsilon > 0`` conservative DPO (cDPO).

    ``loss_i = −(1−ε)·log σ(β·h_i) − ε·log σ(−β·h_i)``, ``h = (πc − refc) − (πr − refr)``.
    With ``center_logits`` the margin is first centred, ``h ← h − mean_B(h)``, the
    mean detached. Rewards: ``β·rc``, ``β·rr``.

    Paper: Rafailov et al. 2023, "Direct Preference Optimization: Your Language
    Model is Secretly a Reward Model", arXiv 2305.18290; label smoothing from
    Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO".
    Shapes: all inputs ``[B]``; ``losses`` and rewards ``[B]``.
    """
    chosen_rewards = policy_chosen_logps - ref_chosen_logps
    rejected_rewards = policy_rejected_logps - ref_rejected_logps
    margin = chosen_rewards - rejected_rewards
    if center_logits:
        margin = margin - margin.mean().detach()
    losses = _smoothed_logistic(beta * margin, epsilon)
    return _output(losses, beta * chosen_rewards, beta * rejected_rewards)


def robust_dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                    ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
                    beta: Beta = 0.1, epsilon: Epsilon = 0.1) -> PreferenceLossOutput:
    """Robust DPO: an unbiased loss under preference labels flipped with rate ε.

    ``loss_i = (−(1−ε)·log σ(β·h_i) + ε·log σ(−β·h_i)) / (1 − 2ε)``, ``0 ≤ ε < 1/2``.
    Rewards: ``β·rc``, ``β·rr``.

    Paper: Chowdhury et al. 2024, "Provably Robust DPO: Aligning Language Models
    with Noisy Feedback", arXiv 2403.00409. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    if not 0.0 <= epsilon < 0.5:
        raise LossArgumentError(f"robust: epsilon must be in [0, 0.5), got {epsilon}")
    chosen_rewards = policy_chosen_logps - ref_chosen_logps
    rejected_rewards = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_rewards - rejected_rewards)
    losses = (-(1.0 - epsilon) * F.logsigmoid(logits)
              + epsilon * F.logsigmoid(-logits)) / (1.0 - 2.0 * epsilon)
    return _output(losses, beta * chosen_rewards, beta * rejected_rewards)


def ipo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
             ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
             beta: Beta = 0.1) -> PreferenceLossOutput:
    """Identity Preference Optimization: regress the log-likelihood-ratio margin to 1/(2β).

    Drives the margin to a fixed target instead of pushing it to infinity, so it
    does not overfit deterministic preferences.
    ``loss_i = (h_i − 1/(2β))²`` with ``h = (πc − refc) − (πr − refr)`` over
    *summed* sequence log-probs, as in the paper's empirical objective (its
    eq. 17: ``log(π(y_w)π_ref(y_l) / π(y_l)π_ref(y_w))``). Rewards: ``β·rc``, ``β·rr``.

    Per-token means instead of sums (``h̄ = rc/Lc − rr/Lr``, TRL's ``ipo``) are a
    convention, not the paper's: that form is :func:`ipo_mean_loss` (``ipo_mean``).

    Paper: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
    from Human Preferences", arXiv 2310.12036. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    chosen_rewards = policy_chosen_logps - ref_chosen_logps
    rejected_rewards = policy_rejected_logps - ref_rejected_logps
    losses = (chosen_rewards - rejected_rewards - 1.0 / (2.0 * beta)) ** 2
    return _output(losses, beta * chosen_rewards, beta * rejected_rewards)


def ipo_mean_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                  ref_chosen_logps: Tensor, ref_rejected_logps: Tensor,
                  chosen_lengths: Tensor, rejected_lengths: Tensor, *,
                  beta: Beta = 0.1) -> PreferenceLossOutput:
    """IPO on per-token mean log-probs: the length-averaged form TRL calls ``ipo``.

    ``loss_i = (rc_i/Lc_i − rr_i/Lr_i − 1/(2β))²``: :func:`ipo_loss` with every
    log-prob divided by its completion length, so the target margin is per token
    and long replies do not dominate. Rewards: ``β·rc/Lc``, ``β·rr/Lr``.

    Paper: Azar et al. 2023, arXiv 2310.12036 (the loss; the paper sums); averaging
    as in TRL's ``DPOTrainer(loss_type="ipo")``. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    return ipo_loss(policy_chosen_logps / chosen_lengths,
                    policy_rejected_logps / rejected_lengths,
                    ref_chosen_logps / chosen_lengths, ref_rejected_logps / rejected_lengths,
                    beta=beta)


def hinge_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
               ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
               beta: Beta = 0.1) -> PreferenceLossOutput:
    """Hinge (SLiC / RSO) loss on the reference-relative margin.

    ``loss_i = max(0, 1 − β·h_i)``. Rewards: ``β·rc``, ``β·rr``.

    Papers: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human
    Feedback", arXiv 2305.10425; Liu et al. 2023, "Statistical Rejection Sampling
    Improves Preference Optimization", arXiv 2309.06657.
    Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    chosen_rewards = policy_chosen_logps - ref_chosen_logps
    rejected_rewards = policy_rejected_logps - ref_rejected_logps
    losses = torch.relu(1.0 - beta * (chosen_rewards - rejected_rewards))
    return _output(losses, beta * chosen_rewards, beta * rejected_rewards)


def simpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
               chosen_lengths: Tensor, rejected_lengths: Tensor, *,
               beta: Beta = 2.0, gamma: Gamma = 0.5,
               epsilon: Epsilon = 0.0) -> PreferenceLossOutput:
    """SimPO: reference-free, length-normalised rewards with a target margin γ.

    ``loss_i = −(1−ε)·log σ(β(āc − ār) − γ) − ε·log σ(−β(āc − ār) + γ)``.
    Rewards: ``β·āc``, ``β·ār``.

    Paper: Meng et al. 2024, "SimPO: Simple Preference Optimization with a
    Reference-Free Reward", arXiv 2405.14734. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    chosen_rewards = beta * policy_chosen_logps / chosen_lengths
    rejected_rewards = beta * policy_rejected_logps / rejected_lengths
    losses = _smoothed_logistic(chosen_rewards - rejected_rewards - gamma, epsilon)
    return _output(losses, chosen_rewards, rejected_rewards)


def orpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
              chosen_lengths: Tensor, rejected_lengths: Tensor, *,
              lam: Lam = 0.1) -> PreferenceLossOutput:
    """ORPO: supervised NLL on the chosen completion plus an odds-ratio penalty.

    ``loss_i = −āc − λ·log σ(ℓ_i)``, with the log odds ratio
    ``ℓ = (āc − ār) − (log(1 − e^{āc}) − log(1 − e^{ār}))``; ``log(1 − eˣ)`` is
    computed with a stable :func:`log1mexp` (``āc, ār < 0``).
    Rewards: ``λ·āc``, ``λ·ār``.

    Paper: Hong et al. 2024, "ORPO: Monolithic Preference Optimization without
    Reference Model", arXiv 2403.07691. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    chosen_mean = policy_chosen_logps / chosen_lengths
    rejected_mean = policy_rejected_logps / rejected_lengths
    log_odds = (chosen_mean - rejected_mean) - (log1mexp(chosen_mean) - log1mexp(rejected_mean))
    losses = -chosen_mean - lam * F.logsigmoid(log_odds)
    return _output(losses, lam * chosen_mean, lam * rejected_mean)


def rpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
             ref_chosen_logps: Tensor, ref_rejected_logps: Tensor,
             chosen_lengths: Tensor, rejected_lengths: Tensor, *,
             beta: Beta = 0.1, alpha: Alpha = 1.0,
             epsilon: Epsilon = 0.0) -> PreferenceLossOutput:
    """RPO: the DPO loss plus a length-normalised NLL term on the chosen completion.

    ``loss_i = dpo_i + α·(−āc)`` (``dpo_i`` with label smoothing ε, see
    :func:`dpo_loss`). Rewards: ``β·rc``, ``β·rr``.

    Paper: Pang et al. 2024, "Iterative Reasoning Preference Optimization",
    arXiv 2404.19733. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    dpo = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                   ref_rejected_logps, beta=beta, epsilon=epsilon)
    losses = dpo.losses - alpha * policy_chosen_logps / chosen_lengths
    return _output(losses, dpo.chosen_rewards, dpo.rejected_rewards)


def caldpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
                beta: Beta = 0.1) -> PreferenceLossOutput:
    """Cal-DPO: the contrastive loss plus a calibration of each implicit reward.

    ``loss_i = −log σ(h_i) + (rc_i − 1/(2β))² + (rr_i + 1/(2β))²``: the chosen
    log-ratio is pulled towards ``+1/(2β)`` and the rejected one towards
    ``−1/(2β)``, so rewards keep an absolute scale. Rewards: ``β·rc``, ``β·rr``.

    Paper: Xiao et al. 2024, "Cal-DPO: Calibrated Direct Preference Optimization
    for Language Model Alignment", arXiv 2412.14516.
    Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    chosen_rewards = policy_chosen_logps - ref_chosen_logps
    rejected_rewards = policy_rejected_logps - ref_rejected_logps
    target = 1.0 / (2.0 * beta)
    losses = (-F.logsigmoid(chosen_rewards - rejected_rewards)
              + (chosen_rewards - target) ** 2
              + (rejected_rewards + target) ** 2)
    return _output(losses, beta * chosen_rewards, beta * rejected_rewards)


def drdpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
               ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
               beta: Beta = 0.1, beta_prime: BetaPrime = 1.0) -> PreferenceLossOutput:
    """Dr. DPO: distributionally robust reduction of the per-pair DPO losses.

    Per pair the DPO loss ``ℓ_i``; the batch loss is a soft minimum that
    down-weights pairs with large loss (likely mislabelled)::

        loss = −β′·log( (1/B)·Σ_i exp(−ℓ_i / β′) )
             = −β′·(logsumexp_i(−ℓ_i / β′) − log B)

    As ``β′ → ∞`` it tends to the mean of ``ℓ``. Rewards: ``β·rc``, ``β·rr``.

    Paper: Wu et al. 2024, "Towards Robust Alignment of Language Models:
    Distributionally Robustifying Direct Preference Optimization", arXiv 2407.07880.
    Shapes: inputs ``[B]``; ``losses`` (the ``ℓ_i``) and rewards ``[B]``.
    """
    dpo = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                   ref_rejected_logps, beta=beta)
    batch = dpo.losses.numel()
    loss = -beta_prime * (torch.logsumexp(-dpo.losses / beta_prime, dim=0) - math.log(batch))
    return _output(dpo.losses, dpo.chosen_rewards, dpo.rejected_rewards, loss=loss)


def xpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
             ref_chosen_logps: Tensor, ref_rejected_logps: Tensor,
             policy_ref_sample_logps: Tensor, *, beta: Beta = 0.1,
             alpha: ExplorationAlpha = 1e-5) -> PreferenceLossOutput:
    """Exploratory Preference Optimization: DPO plus an exploration term on reference samples.

    ``loss_i = −log σ(β·h_i) + α·πs_i`` with ``πs = log π_θ(ỹ|x)`` for a reply ``ỹ``
    sampled from π_ref for the same prompt. Minimising ``α·πs`` lowers the policy's
    likelihood of what the reference already says, which pushes it to explore
    beyond the reference's support (optimism, made implicit). Offline, ``ỹ`` is a
    fixed sample stored with the pair (``reference_sample``), drawn once before
    training, rather than a fresh one per iteration. Rewards: ``β·rc``, ``β·rr``.
    The default α is TRL's ``XPOConfig`` default.

    Paper: Xie et al. 2024, "Exploratory Preference Optimization: Harnessing Implicit
    Q*-Approximation for Sample-Efficient RLHF", arXiv 2405.21046 (Algorithm 1).
    Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    dpo = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                   ref_rejected_logps, beta=beta)
    losses = dpo.losses + alpha * policy_ref_sample_logps
    return _output(losses, dpo.chosen_rewards, dpo.rejected_rewards)
