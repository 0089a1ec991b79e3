"""Reward-model ensembles: the mean, the spread, and the uncertainty-penalised reward.

``K`` reward models that differ only in seed (head and adapter initialisation,
data order) agree where the data pins the reward down and disagree off it. A
policy optimised against ``r̄ − λ·s`` (the member mean minus λ times their
standard deviation) is discouraged from the regions where the reward is a
guess, which delays reward hacking (Coste et al. 2023, "Reward Model Ensembles
Help Mitigate Overoptimization", arXiv 2310.02743; Eisenstein et al. 2023,
"Helping or Herding?", arXiv 2312.09244).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefalign.errors import ConfigError


@dataclass
class EnsembleScores:
    """Scores of ``N`` responses by ``K`` members.

    ``members [K, N]``; ``mean``, ``std``, ``penalised`` ``[N]``.
    """

    members: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    penalised: torch.Tensor
    penalty: float


def ensemble_scores(members: torch.Tensor, penalty: float) -> EnsembleScores:
    """Combine member scores ``[K, N]``.

    ``mean_n = (1/K) Σ_k r_kn``; ``std_n = sqrt((1/K) Σ_k (r_kn − mean_n)²)`` (the
    population standard deviation, so a single member has ``std = 0``);
    ``penalised_n = mean_n − λ·std_n`` with ``λ = penalty ≥ 0``.
    """
    if members.dim() != 2 or members.shape[0] < 1:
        raise ConfigError(f"ensemble scores must have shape [K, N] with K ≥ 1, "
                          f"got {tuple(members.shape)}")
    if penalty < 0:
        raise ConfigError(f"the ensemble penalty λ must be ≥ 0, got {penalty}")
    members = members.to(torch.float32)
    mean = members.mean(dim=0)
    std = members.std(dim=0, correction=0)
    return EnsembleScores(members=members, mean=mean, std=std,
                          penalised=mean - penalty * std, penalty=float(penalty))
