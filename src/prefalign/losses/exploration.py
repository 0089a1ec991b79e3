"""Pieces of online preference optimisation: sequence log-probs of sampled pairs and
XPO's exploration term.

Token log-probs are ``[B, T]`` with a 0/1 ``mask`` of completion tokens.
"""

from __future__ import annotations

from torch import Tensor


def sequence_logps(token_logps: Tensor, mask: Tensor, average: bool = False) -> Tensor:
    """``log π(y|x) = Σ_t m_t·log π(y_t)`` per row, or with ``average`` the per-token
    mean ``Σ_t m_t·log π(y_t) / Σ_t m_t`` (the ``loss.average_log_prob`` convention,
    which makes a preference loss blind to length). Shapes: ``[B, T]`` → ``[B]``.
    """
    sums = (token_logps * mask).sum(-1)
    return sums / mask.sum(-1).clamp(min=1).to(sums.dtype) if average else sums


def xpo_exploration_term(ref_sample_logps: Tensor, alpha: float) -> Tensor:
    """XPO's exploration bonus, as a loss term: ``α · mean_b log π_θ(ỹ_b | x_b)`` with
    ``ỹ_b ~ π_ref(·|x_b)``.

    Adding it to the DPO loss lowers the policy's likelihood of the reference's own
    responses, which pushes it to explore beyond them (optimism in the face of
    uncertainty, made implicit). Paper: Xie et al. 2024, "Exploratory Preference
    Optimization: Harnessing Implicit Q*-Approximation for Sample-Efficient RLHF",
    arXiv 2405.21046 (their eq. for the XPO objective). Shapes: ``[B]`` → scalar.
    """
    return alpha * ref_sample_logps.mean()
