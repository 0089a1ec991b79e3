"""Statistics of a policy comparison: intervals, win rates, KL estimators, openers.

* ``bootstrap_interval`` — percentile bootstrap (Efron 1979) of the mean: draw
  ``B`` resamples of the ``n`` values with replacement (``numpy.random.default_rng(seed)``,
  one ``[B, n]`` index draw), take each resample's mean, report the
  ``α/2`` and ``1 − α/2`` percentiles (linear interpolation).
* ``win_points`` — per prompt ``1`` when the policy's answer is preferred, ``½`` on a
  tie, ``0`` otherwise; the win rate is their mean, ``(wins + ½·ties) / n``.
* ``kl_estimates`` — with ``log r_t = log π_ref(y_t) − log π(y_t)`` on tokens sampled
  from ``π`` (Schulman 2020, "Approximating KL divergence"):
  ``k1_t = −log r_t`` and ``k3_t = (r_t − 1) − log r_t`` (never negative, unbiased,
  lower variance). Per sequence: the mean over samples of ``Σ_t k_t`` (by the chain
  rule an unbiased estimate of ``KL(π‖π_ref)`` over whole responses); per token:
  ``Σ k_t`` over all sampled tokens divided by their number.
* ``verbose_opener_rate`` — share of responses opening with filler
  (``VERBOSE_OPENERS``, matched case-insensitively after leading spaces, as whole
  words: "Sure!" counts, "Surely" does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TIE_TOLERANCE = 1e-6

# Openers that add words but no content; a response starting with one of these
# (case-insensitive, after leading whitespace) counts as a verbose opener.
VERBOSE_OPENERS: tuple[str, ...] = (
    "sure", "certainly", "of course", "absolutely", "great question", "good question",
    "what a great", "i'd be happy to", "i would be happy to", "i'd be glad to",
    "i'm happy to", "happy to help", "thank you for", "thanks for", "okay, so", "well,",
    "as an ai",
)


def bootstrap_interval(values: Sequence[float], seed: int = 0, resamples: int = 2000,
                       alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (module docstring)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data.size, size=(resamples, data.size))
    means = data[index].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def win_points(policy: Sequence[float], baseline: Sequence[float],
               tolerance: float = TIE_TOLERANCE) -> list[float]:
    """``1``/``½``/``0`` per prompt for pointwise scores (ties within ``tolerance``)."""
    return [0.5 if abs(p - b) <= tolerance else float(p > b) for p, b in zip(policy, baseline)]


def verdict_points(verdicts) -> list[float]:
    """``½`` for a tied pairwise verdict, else its ``p_first`` (the policy is first)."""
    return [0.5 if v.tie else float(v.p_first) for v in verdicts]


def kl_estimates(policy_logps: Sequence[Sequence[float]],
                 reference_logps: Sequence[Sequence[float]]) -> dict[str, float]:
    """``kl_k1_seq``, ``kl_k3_seq``, ``kl_k1_token``, ``kl_k3_token`` from per-token
    log-probs of samples of the policy under the policy and the reference."""
    k1_seq, k3_seq, tokens = [], [], 0
    for mine, ref in zip(policy_logps, reference_logps):
        log_r = np.asarray(ref, dtype=np.float64) - np.asarray(mine, dtype=np.float64)
        k1_seq.append(float((-log_r).sum()))
        k3_seq.append(float((np.expm1(log_r) - log_r).sum()))
        tokens += log_r.size
    if not k1_seq:
        return {}
    return {"kl_k1_seq": float(np.mean(k1_seq)), "kl_k3_seq": float(np.mean(k3_seq)),
            "kl_k1_token": sum(k1_seq) / max(tokens, 1),
            "kl_k3_token": sum(k3_seq) / max(tokens, 1)}


def has_verbose_opener(text: str, openers: Sequence[str] = VERBOSE_OPENERS) -> bool:
    """True when ``text`` starts (case-insensitively, after spaces) with an opener."""
    start = text.lstrip().lower()
    return any(start.startswith(opener) and not start[len(opener):len(opener) + 1].isalnum()
               for opener in openers)


def verbose_opener_rate(texts: Sequence[str],
                        openers: Sequence[str] = VERBOSE_OPENERS) -> float:
    """Share of ``texts`` that start with a verbose opener."""
    if not texts:
        return 0.0
    return sum(has_verbose_opener(t, openers) for t in texts) / len(texts)
