"""Step-level reward losses: process (every step) and outcome (the final answer only).

A step reward model emits one logit ``z_k`` per reasoning step, read at the
step's last token. Both objectives are binary cross-entropy,

    L = − (1/|M|) Σ_{(b,k) ∈ M} [ y_bk log σ(z_bk) + (1 − y_bk) log(1 − σ(z_bk)) ],

and differ only in the targets ``y`` and the set ``M`` of supervised steps:

* **process** (PRM; Lightman et al. 2023, "Let's Verify Step by Step";
  Uesato et al. 2022, "Solving math word problems with process- and
  outcome-based feedback"): every step, ``y_bk`` = its own label;
* **outcome** (ORM; Cobbe et al. 2021, "Training Verifiers to Solve Math Word
  Problems"): the last step only, ``y`` = whether the final answer is right.

A solution's score aggregates its step probabilities ``p_k = σ(z_k)``:
``min`` (the weakest step), ``mean``, ``product`` (every step sound, treated
as independent) or ``last`` (the ORM's reading).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES = ("process", "outcome")
AGGREGATIONS = ("min", "mean", "product", "last")


def step_targets(labels: torch.Tensor, final_correct: torch.Tensor, mask: torch.Tensor,
                 objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets [B, K], supervised mask [B, K])`` of ``objective``.

    ``labels [B, K]`` are the per-step labels, ``final_correct [B]`` the answer's,
    ``mask [B, K]`` 1 on real steps (padding 0; every row has at least one step).
    """
    if objective == "process":
        return labels.float(), mask.bool()
    if objective != "outcome":
        raise ValueError(f"unknown step objective {objective!r}; expected one of {OBJECTIVES}")
    last = mask.long().sum(dim=1) - 1
    supervised = torch.zeros_like(mask, dtype=torch.bool)
    supervised[torch.arange(mask.shape[0]), last] = True
    targets = final_correct.float().unsqueeze(1).expand_as(labels).clone()
    return targets, supervised


def step_bce_loss(logits: torch.Tensor, targets: torch.Tensor,
                  supervised: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits [B, K]`` over the ``supervised`` steps."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets.float(),
                                                reduction="none")
    return (losses * supervised).sum() / supervised.sum().clamp(min=1)


def aggregate(probabilities: torch.Tensor, how: str) -> float:
    """One solution's score from its step probabilities ``[K]`` (see the module docstring)."""
    if how == "min":
        return float(probabilities.min())
    if how == "mean":
        return float(probabilities.mean())
    if how == "product":
        return float(probabilities.double().prod())
    if how == "last":
        return float(probabilities[-1])
    raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")


def process_advantages(step_rewards: list[list[float]], step_ends: list[list[int]],
                       group: int, length: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's process-supervised advantages ``[N, T]`` (Shao et al. 2024, "DeepSeekMath",
    arXiv 2402.03300, §4.1.3).

    Completion ``j`` of a group has step rewards ``r_k^j``, step ``k`` ending at
    token ``e_k^j``. With ``R`` all step rewards of the group's ``G`` completions,

        r̃_k^j = (r_k^j − mean(R)) / (std(R) + ε),    A_t^j = Σ_{k : e_k^j ≥ t} r̃_k^j,

    so a token is credited with the normalised rewards of its own step and every
    later one. Completions come grouped (``G`` consecutive per prompt); tokens
    after a completion's last step end get 0.
    """
    advantages = torch.zeros(len(step_rewards), length, dtype=torch.float32)
    for start in range(0, len(step_rewards), group):
        pooled = torch.tensor([r for rewards in step_rewards[start:start + group]
                               for r in rewards], dtype=torch.float64)
        mean, std = pooled.mean(), pooled.std(correction=0)
        for j in range(start, start + group):
            for reward, end in zip(step_rewards[j], step_ends[j]):
                advantages[j, :end + 1] += float((reward - mean) / (std + eps))
    return advantages
