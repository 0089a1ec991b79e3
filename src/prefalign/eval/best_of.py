"""Best-of-n and rejection sampling as policies.

Best-of-n (Stiennon et al. 2020, "Learning to summarize from human feedback";
Nakano et al. 2021, WebGPT): draw ``n`` answers from a base policy and keep the
one a pointwise judge scores highest. Rejection sampling: keep the first of the
``n`` whose score reaches a threshold, else the best. The KL of the best-of-n
policy to its base is at most ``log n − (n − 1)/n`` (Stiennon et al. 2020;
Beirami et al. 2024 show it is an upper bound), reported as ``kl_bound``.
"""

from __future__ import annotations

import math

from prefalign.eval.judging import score
from prefalign.eval.policies import LoadedPolicy
from prefalign.rollout.types import Completion, SamplingSettings


def best_of_n_kl_bound(n: int) -> float:
    """``log n − (n − 1)/n``."""
    return math.log(n) - (n - 1) / n


def pick(scores: list[float], threshold: float | None) -> int:
    """Index kept among one prompt's ``n`` scores: the first ``≥ threshold``, else the
    best (the first best on ties)."""
    if threshold is not None:
        for index, value in enumerate(scores):
            if value >= threshold:
                return index
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def best_of_n(policy: LoadedPolicy, prompt_ids: list[list[int]], prompts: list[str],
              records: list[dict], judge, n: int, settings: SamplingSettings, seed: int,
              threshold: float | None = None) -> list[Completion]:
    """One kept completion per prompt (module docstring); sampling at
    ``settings.temperature``, or 1 when that is greedy."""
    temperature = settings.temperature if settings.temperature > 0 else 1.0
    draw = SamplingSettings(n, settings.max_new_tokens, temperature, settings.top_p,
                            settings.top_k, settings.stop)
    groups = policy.sample(prompt_ids, draw, seed)
    texts = [c.text for group in groups for c in group]
    scores = score(judge, [p for p in prompts for _ in range(n)], texts,
                   [r for r in records for _ in range(n)])
    return [group[pick(scores[i * n:(i + 1) * n], threshold)] for i, group in enumerate(groups)]
