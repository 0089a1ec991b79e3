"""One row of numbers per policy, from its answers, KL samples and judgments.

Per policy (``n`` prompts):

* ``rewards[judge]`` — for each pointwise judge: ``mean``, ``std`` (population) and a
  seeded percentile-bootstrap 95% interval of the mean (``ci_low``, ``ci_high``);
* ``pass[judge]`` — for each verifier judge: pass rate (score ≥ 1) with its 95%
  Wilson interval;
* ``win_rates[judge]`` — against the baseline, for every pairwise judge and every
  pointwise judge that is not a verifier (a pointwise judge compares the two
  answers' scores): ``rate = (wins + ½·ties)/n`` with a bootstrap interval, and
  ``length_controlled``, the win rate at equal length
  (``prefalign.eval.length_control``; lengths in tokens); for a pairwise judge also
  ``tie_rate`` and ``position_flip_rate`` (the verdict changes with the order of the
  two answers). ``win_rate`` is the one of the *win judge* (the first pairwise
  judge, else the first pointwise judge that is not a verifier, else the first);
* ``kl_k1_seq``, ``kl_k3_seq``, ``kl_k1_token``, ``kl_k3_token`` — KL to the
  reference (``prefalign.eval.stats``), absent for best-of-n policies, which carry
  ``kl_bound`` (``log n − (n − 1)/n`` to their base policy) instead;
* ``length`` — mean answer length in tokens; ``verbose_opener_rate``;
* ``reward_per_kl`` — reward gained per nat of KL over the baseline,
  ``(R − R_base) / (KL − KL_base)`` with ``R`` the mean score of the *reward judge*
  (the first pointwise non-verifier judge, else the first pointwise judge) and
  ``KL`` the per-sequence k1 estimate; ``None`` when undefined.
"""

from __future__ import annotations

import numpy as np

from prefalign.eval.best_of import best_of_n_kl_bound
from prefalign.eval.judging import is_verifier, pairwise, pointwise
from prefalign.eval.length_control import length_controlled_win_rate
from prefalign.eval.stats import (
    bootstrap_interval,
    verbose_opener_rate,
    verdict_points,
    win_points,
)
from prefalign.intervals import wilson_interval

KL_KEYS = ("kl_k1_seq", "kl_k3_seq", "kl_k1_token", "kl_k3_token")


def reward_judge(judges: list):
    """The judge whose mean score is ``reward`` in ``reward_per_kl`` (module docstring)."""
    points = pointwise(judges)
    plain = [j for j in points if not is_verifier(j)]
    return (plain or points or [None])[0]


def win_judge(judges: list):
    """The judge behind ``win_rate`` (module docstring)."""
    return (pairwise(judges) or [reward_judge(judges)])[0]


def win_judges(judges: list) -> list:
    """The judges with a column in ``win_rates``: pairwise, then pointwise non-verifiers
    (only the win judge when there is no such judge)."""
    chosen = pairwise(judges) + [j for j in pointwise(judges) if not is_verifier(j)]
    return chosen or [j for j in [win_judge(judges)] if j is not None]


def _reward_stats(values: list[float], seed: int, resamples: int) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_interval(data, seed, resamples)
    return {"mean": float(data.mean()), "std": float(data.std()), "ci_low": low, "ci_high": high}


def _win(answer, base, judge, seed: int, resamples: int) -> dict:
    if answer is base:
        points = [0.5] * len(answer.texts)
    elif hasattr(judge, "compare"):
        points = verdict_points(answer.verdicts[judge.name])
    else:
        points = win_points(answer.scores[judge.name], base.scores[judge.name])
    low, high = bootstrap_interval(points, seed, resamples)
    difference = [a - b for a, b in zip(answer.lengths, base.lengths)]
    win = {"judge": judge.name, "rate": float(np.mean(points)), "ci_low": low, "ci_high": high,
           "length_controlled": length_controlled_win_rate(points, difference)}
    if answer is not base and hasattr(judge, "compare"):
        verdicts = answer.verdicts[judge.name]
        win["tie_rate"] = float(np.mean([v.tie for v in verdicts]))
        win["position_flip_rate"] = float(np.mean([v.position_flip for v in verdicts]))
    return win


def _reward_per_kl(row: dict, base_row: dict, judge) -> float | None:
    if judge is None or row is base_row or "kl_k1_seq" not in row \
            or "kl_k1_seq" not in base_row:
        return None
    gained = row["rewards"][judge.name]["mean"] - base_row["rewards"][judge.name]["mean"]
    spent = row["kl_k1_seq"] - base_row["kl_k1_seq"]
    return gained / spent if abs(spent) > 1e-9 else None


def policy_row(answer, base, judges: list, seed: int, resamples: int) -> dict:
    """The row of one policy (module docstring), without ``reward_per_kl``."""
    row: dict = {"policy": answer.label, "model": answer.model, "best_of": answer.best_of,
                 "n": len(answer.texts), "rewards": {}, "pass": {}}
    for judge in pointwise(judges):
        values = answer.scores[judge.name]
        row["rewards"][judge.name] = _reward_stats(values, seed, resamples)
        if is_verifier(judge):
            passed = sum(v >= 1.0 for v in values)
            low, high = wilson_interval(passed, len(values))
            row["pass"][judge.name] = {"rate": passed / len(values), "passed": passed,
                                       "ci_low": low, "ci_high": high}
    row["win_rates"] = {j.name: _win(answer, base, j, seed, resamples)
                        for j in win_judges(judges)}
    judge = win_judge(judges)
    if judge is not None:
        row["win_rate"] = row["win_rates"][judge.name]
    row.update({key: answer.kl[key] for key in KL_KEYS if key in answer.kl})
    if answer.best_of > 1:
        row["kl_bound"] = best_of_n_kl_bound(answer.best_of)
    row["length"] = float(np.mean(answer.lengths))
    row["verbose_opener_rate"] = verbose_opener_rate(answer.texts)
    return row


def comparison_rows(answers: list, judges: list, baseline: int, seed: int = 0,
                    resamples: int = 2000) -> list[dict]:
    """One row per policy, baseline included (module docstring)."""
    base = answers[baseline]
    rows = [policy_row(a, base, judges, seed, resamples) for a in answers]
    judge = reward_judge(judges)
    for row in rows:
        row["reward_per_kl"] = _reward_per_kl(row, rows[baseline], judge)
    return rows
