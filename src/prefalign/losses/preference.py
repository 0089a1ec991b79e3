"""Paired offline preference losses: DPO and its family, as a registry of pure functions.

Every loss takes 1-D tensors of shape ``[B]``: the policy's (and, where the
method needs one, the reference model's) log-probabilities of the chosen and the
rejected completion, each the *sum* over completion tokens, and, where the method
works per token, the completion lengths in tokens. Hyperparameters are keyword
arguments. Each returns a :class:`PreferenceLossOutput`.

Notation shared by the docstrings::

    rc = πc − refc,  rr = πr − refr,  h = rc − rr          (implicit rewards, margin)
    āc = πc / Lc,    ār = πr / Lr                          (per-token mean log-probs)
    σ  = logistic function

Use :func:`preference_loss` to call a loss by name; it checks the name, the
hyperparameters and the inputs the method needs, and names the valid choices
when something is wrong.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from prefalign.errors import ConfigError


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
             beta: float = 0.1, epsilon: float = 0.0,
             center_logits: bool = False) -> PreferenceLossOutput:
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
                    beta: float = 0.1, epsilon: float = 0.1) -> PreferenceLossOutput:
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
             ref_chosen_logps: Tensor, ref_rejected_logps: Tensor,
             chosen_lengths: Tensor, rejected_lengths: Tensor, *,
             beta: float = 0.1) -> PreferenceLossOutput:
    """Identity Preference Optimization: regress the length-normalised margin to 1/(2β).

    ``loss_i = (h̄_i − 1/(2β))²``, ``h̄ = (πc − refc)/Lc − (πr − refr)/Lr``.
    Rewards: ``β·rc/Lc``, ``β·rr/Lr``.

    Paper: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
    from Human Preferences", arXiv 2310.12036. Shapes: inputs ``[B]``; outputs ``[B]``.
    """
    chosen_rewards = (policy_chosen_logps - ref_chosen_logps) / chosen_lengths
    rejected_rewards = (policy_rejected_logps - ref_rejected_logps) / rejected_lengths
    losses = (chosen_rewards - rejected_rewards - 1.0 / (2.0 * beta)) ** 2
    return _output(losses, beta * chosen_rewards, beta * rejected_rewards)


def hinge_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
               ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
               beta: float = 0.1) -> PreferenceLossOutput:
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
               beta: float = 2.0, gamma: float = 0.5,
               epsilon: float = 0.0) -> PreferenceLossOutput:
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
              lam: float = 0.1) -> PreferenceLossOutput:
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
             beta: float = 0.1, alpha: float = 1.0,
             epsilon: float = 0.0) -> PreferenceLossOutput:
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
                beta: float = 0.1) -> PreferenceLossOutput:
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
               beta: float = 0.1, beta_prime: float = 1.0) -> PreferenceLossOutput:
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


PREFERENCE_LOSSES: dict[str, Callable[..., PreferenceLossOutput]] = {
    "dpo": dpo_loss,
    "robust": robust_dpo_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
    "rpo": rpo_loss,
    "caldpo": caldpo_loss,
    "drdpo": drdpo_loss,
}

_TENSOR_INPUTS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps",
                  "ref_rejected_logps", "chosen_lengths", "rejected_lengths")


def _signature_parts(name: str) -> tuple[list[str], dict[str, object]]:
    """The tensor inputs and the hyperparameters (with defaults) of loss ``name``."""
    parameters = inspect.signature(PREFERENCE_LOSSES[name]).parameters.values()
    inputs = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    params = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return inputs, params


def _check_name(name: str) -> None:
    if name not in PREFERENCE_LOSSES:
        valid = ", ".join(sorted(PREFERENCE_LOSSES))
        raise LossArgumentError(f"unknown preference loss '{name}'; valid names: {valid}")


def loss_params(name: str) -> dict[str, object]:
    """The hyperparameters loss ``name`` accepts, with their default values."""
    _check_name(name)
    return _signature_parts(name)[1]


def requires_reference(name: str) -> bool:
    """Whether loss ``name`` needs reference-model log-probs."""
    _check_name(name)
    return "ref_chosen_logps" in _signature_parts(name)[0]


def requires_lengths(name: str) -> bool:
    """Whether loss ``name`` needs completion lengths (it works per token)."""
    _check_name(name)
    return "chosen_lengths" in _signature_parts(name)[0]


REFERENCE_FREE: frozenset[str] = frozenset(
    name for name in PREFERENCE_LOSSES if not requires_reference(name))


def preference_loss(name: str, policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                    ref_chosen_logps: Tensor | None = None,
                    ref_rejected_logps: Tensor | None = None,
                    chosen_lengths: Tensor | None = None,
                    rejected_lengths: Tensor | None = None,
                    **params: object) -> PreferenceLossOutput:
    """Compute the paired preference loss ``name`` (a key of ``PREFERENCE_LOSSES``).

    Log-probs are sums over completion tokens and lengths are completion token
    counts, all of shape ``[B]``. Reference log-probs are ignored by reference-free
    losses (``REFERENCE_FREE``) and lengths by losses that do not use them.
    Raises ``LossArgumentError`` (a ``ValueError``) for an unknown name, an unknown
    hyperparameter, a missing input, or inputs of mismatched shapes.
    """
    _check_name(name)
    inputs, accepted = _signature_parts(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise LossArgumentError(
            f"loss '{name}' got unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    given = dict(zip(_TENSOR_INPUTS, (policy_chosen_logps, policy_rejected_logps,
                                      ref_chosen_logps, ref_rejected_logps,
                                      chosen_lengths, rejected_lengths)))
    missing = [key for key in inputs if given[key] is None]
    if missing:
        raise LossArgumentError(
            f"loss '{name}' needs {', '.join(missing)}; it takes {', '.join(inputs)}; "
            f"reference-free losses: {', '.join(sorted(REFERENCE_FREE))}")
    shape = policy_chosen_logps.shape
    if policy_chosen_logps.dim() != 1:
        raise LossArgumentError(f"loss '{name}': log-probs must be 1-D [B], got {tuple(shape)}")
    args = []
    for key in inputs:
        value = given[key]
        if value.shape != shape:
            raise LossArgumentError(
                f"loss '{name}': {key} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        if key.endswith("_lengths"):
            if bool((value <= 0).any()):
                raise LossArgumentError(f"loss '{name}': {key} must be positive token counts")
            value = value.to(policy_chosen_logps.dtype)
        args.append(value)
    return PREFERENCE_LOSSES[name](*args, **params)
