"""Judge validation: agreement with gold preference labels.

Each labelled pair ``{prompt, chosen, rejected}`` is judged with ``chosen`` as
response A. A pairwise judge's verdict is a win when it is not a tie and
``p_first > ½``, a loss when not a tie and ``p_first < ½``; a pointwise judge's
when ``score(chosen) > score(rejected)`` (equal scores are a tie). Figures:

* accuracy ``(wins + ½·ties) / n`` and decisive accuracy ``wins / (wins + losses)``;
* position bias (pairwise only): the share of pairs whose preferred response
  changes when the order is swapped (Zheng et al. 2023, "Judging LLM-as-a-Judge
  with MT-Bench and Chatbot Arena", §3.3, position-swap consistency);
* tie rate;
* pairwise only: preference accuracy, the share of pairs with ``p_first > ½`` (the
  mean of the two orders, ½ counting ½), which can exceed chance even when every
  verdict flips with the order; and the first-position rate, the mean probability
  given to whichever response is shown first, ``mean((q₁ + q₂)/2)`` with ``q₁``
  the first order's answer and ``q₂ = 1 − swapped_order`` the swapped one's (½: no
  position preference).

Each comes with a Wilson score interval (Wilson 1927) at 95 %:
``(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)``, with ``p̂`` the share
(for accuracy with ½ ties, a fractional count of successes).
"""

from __future__ import annotations

import math
import time
from typing import Any

from prefalign.intervals import wilson_interval
from prefalign.judges.base import Judge, is_pairwise


def share(successes: float, n: int) -> dict[str, Any]:
    """``{value, low, high, n}`` for ``successes`` of ``n``."""
    value = successes / n if n else math.nan
    low, high = wilson_interval(successes, n) if n else (math.nan, math.nan)
    return {"value": value, "low": low, "high": high, "n": n}


def outcomes(judge: Judge, pairs: list[dict]) -> tuple[list[int], list | None]:
    """Per pair +1 (chosen preferred), 0 (tie) or −1, and, for a pairwise judge, its
    verdicts."""
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]
    if is_pairwise(judge):
        verdicts = judge.compare(prompts, chosen, rejected)
        signs = [0 if v.tie else (v.p_first > 0.5) - (v.p_first < 0.5) for v in verdicts]
        return signs, verdicts
    scores = judge.score(prompts + prompts, chosen + rejected, pairs + pairs)
    n = len(pairs)
    return [(scores[i] > scores[n + i]) - (scores[i] < scores[n + i]) for i in range(n)], None


def judge_agreement(judge: Judge, pairs: list[dict]) -> dict[str, Any]:
    """Agreement figures of ``judge`` on labelled ``pairs`` (see the module docstring)."""
    started = time.perf_counter()
    signs, verdicts = outcomes(judge, pairs)
    n = len(signs)
    wins, ties = signs.count(1), signs.count(0)
    losses = n - wins - ties
    pairwise = verdicts is not None
    return {
        "judge": judge.name,
        "kind": "pairwise" if pairwise else "pointwise",
        "pairs": n,
        "accuracy": share(wins + 0.5 * ties, n),
        "decisive_accuracy": share(wins, wins + losses),
        "position_bias": share(sum(v.position_flip for v in verdicts), n) if pairwise else None,
        "tie_rate": share(ties, n),
        "preference_accuracy": share(sum((v.p_first > 0.5) + 0.5 * (v.p_first == 0.5)
                                         for v in verdicts), n) if pairwise else None,
        "first_position_rate": (sum(v.first_order + 1 - v.swapped_order for v in verdicts)
                                / (2 * n) if pairwise and n else None),
        "wall_time_s": time.perf_counter() - started,
        "stats": judge.stats.as_dict(),
    }


def agreement_markdown(result: dict[str, Any], data: str) -> str:
    """A Markdown table of ``judge_agreement``'s figures."""
    def cell(entry: dict | None) -> str:
        if entry is None:
            return "n/a (pointwise)"
        if entry["n"] == 0:
            return "n/a"
        return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"

    stats = result["stats"]
    first = result["first_position_rate"]
    position = "" if first is None else f"Mean probability given to the response shown " \
        f"first: {first:.3f} (½: no position preference). "
    lines = [f"# Judge agreement: `{result['judge']}`", "",
             f"{result['pairs']} labelled pairs from `{data}` ({result['kind']} judge); "
             f"95% Wilson intervals.", "",
             "| figure | value [95% CI] |", "|---|---|",
             f"| accuracy (ties ½) | {cell(result['accuracy'])} |",
             f"| decisive accuracy | {cell(result['decisive_accuracy'])} |",
             f"| position bias (verdict flips with order) | {cell(result['position_bias'])} |",
             f"| tie rate | {cell(result['tie_rate'])} |",
             f"| preference accuracy (mean of both orders > ½) | "
             f"{cell(result['preference_accuracy'])} |", "",
             f"{position}Wall time {result['wall_time_s']:.1f} s; requests {stats['requests']}, "
             f"cache hits {stats['hits']}, retries {stats['retries']}, "
             f"tokens {stats['prompt_tokens']} in / {stats['completion_tokens']} out.", ""]
    return "\n".join(lines)
