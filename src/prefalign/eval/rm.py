"""Reward-model diagnostics: is this reward trustworthy enough to optimise against?

On held-out pairs ``(x, y_c, y_r)`` scored ``r_c``, ``r_r``:

* **accuracy**: the share of pairs with ``r_c > r_r`` (a tie counts one half);
  reward mean and std over all ``2N`` scored responses; mean margin ``r_c − r_r``.
* **calibration**: ``p = σ(r_c − r_r)`` is the model's probability that the
  chosen reply wins. Every pair is counted in both orders, ``(p, 1)`` and
  ``(1 − p, 0)``, since with the labels always "chosen wins" a model that
  predicts ``p = 1`` everywhere would otherwise look perfect. Expected
  calibration error over equal-width bins (Guo et al. 2017, "On Calibration of
  Modern Neural Networks", arXiv 1706.04599): ``ECE = Σ_b (n_b / n)·|acc_b − conf_b|``.
* **length bias**: the Pearson correlation of score with response length in
  words, and the mean score change when one fixed, content-free paragraph is
  appended to every response (``FILLER_PARAGRAPH``): a reward that pays for
  padding will be hacked by padding (Singhal et al. 2023, "A Long Way to Go:
  Investigating Length Correlations in RLHF", arXiv 2310.03716).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from prefalign.errors import DataError

FILLER_PARAGRAPH = (
    "In general, it is worth keeping in mind that there are many different aspects to "
    "consider here, and each of them can matter to a different degree depending on the "
    "situation. Taking all of this into account, the points above are offered in general "
    "terms, and the overall picture is what matters most.")
CALIBRATION_BINS = 10
ScoreFn = Callable[[Sequence[Any], Sequence[Any]], torch.Tensor]


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """``(1/N) Σ_i (1[r_c > r_r] + ½·1[r_c = r_r])`` over pairs; ``[N]`` inputs."""
    wins = (chosen > rejected).double() + 0.5 * (chosen == rejected).double()
    return float(wins.mean())


def expected_calibration_error(probs: torch.Tensor, outcomes: torch.Tensor,
                               n_bins: int = CALIBRATION_BINS
                               ) -> tuple[float, list[dict[str, float]]]:
    """ECE of probabilities ``probs [M]`` against 0/1 ``outcomes [M]``.

    Bin ``b`` holds ``p ∈ [b/B, (b+1)/B)`` (the last bin includes 1). With
    ``conf_b`` the mean ``p`` and ``acc_b`` the mean outcome of the ``n_b`` items
    in bin ``b``: ``ECE = Σ_b (n_b / M)·|acc_b − conf_b|``. Returns the ECE and,
    per bin, ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy``
    (the last two NaN for an empty bin).
    """
    probs, outcomes = probs.double().flatten(), outcomes.double().flatten()
    if probs.numel() == 0:
        raise DataError("calibration needs at least one prediction")
    index = torch.clamp((probs * n_bins).floor().long(), 0, n_bins - 1)
    total, bins = 0.0, []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        confidence = float(probs[members].mean()) if count else math.nan
        accuracy = float(outcomes[members].mean()) if count else math.nan
        if count:
            total += count / probs.numel() * abs(accuracy - confidence)
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count,
                     "confidence": confidence, "accuracy": accuracy})
    return total, bins


def pairwise_calibration(chosen: torch.Tensor, rejected: torch.Tensor,
                         n_bins: int = CALIBRATION_BINS) -> tuple[float, list[dict[str, float]]]:
    """ECE of ``p = σ(r_c − r_r)``, each pair counted as ``(p, 1)`` and ``(1 − p, 0)``."""
    p = torch.sigmoid(chosen.double() - rejected.double())
    probs = torch.cat([p, 1 - p])
    outcomes = torch.cat([torch.ones_like(p), torch.zeros_like(p)])
    return expected_calibration_error(probs, outcomes, n_bins)


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation ``cov(x, y) / (σ_x σ_y)``; NaN when either is constant."""
    x, y = x.double().flatten(), y.double().flatten()
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / denominator if denominator > 0 else math.nan


def response_text(response: Any) -> str:
    """A response as plain text (the contents of a message list, joined)."""
    if isinstance(response, str):
        return response
    return "\n".join(message["content"] for message in response)


def word_lengths(responses: Sequence[Any]) -> torch.Tensor:
    """Length of each response in whitespace-separated words, ``[N]`` float64."""
    return torch.tensor([len(response_text(r).split()) for r in responses], dtype=torch.float64)


def with_filler(response: Any, filler: str = FILLER_PARAGRAPH) -> Any:
    """The response with ``filler`` appended as a new paragraph (to the last
    message of a message list)."""
    if isinstance(response, str):
        return response.rstrip() + "\n\n" + filler
    messages = [dict(message) for message in response]
    messages[-1]["content"] = messages[-1]["content"].rstrip() + "\n\n" + filler
    return messages


def filler_probe(score: ScoreFn, prompts: Sequence[Any], responses: Sequence[Any],
                 base_scores: torch.Tensor | None = None,
                 filler: str = FILLER_PARAGRAPH) -> dict[str, float]:
    """Score change ``Δ_i = r(x_i, y_i ⊕ filler) − r(x_i, y_i)`` from appending ``filler``.

    Returns ``mean_delta``, ``std_delta`` (population) and ``increased_fraction``
    (share with ``Δ > 0``). ``base_scores`` reuses scores already computed.
    """
    before = score(prompts, responses) if base_scores is None else base_scores
    after = score(prompts, [with_filler(r, filler) for r in responses])
    delta = after.double() - before.double()
    return {"mean_delta": float(delta.mean()), "std_delta": float(delta.std(correction=0)),
            "increased_fraction": float((delta > 0).double().mean()),
            "filler_words": len(filler.split())}


def pairwise_metrics(chosen: torch.Tensor, rejected: torch.Tensor,
                     n_bins: int = CALIBRATION_BINS) -> dict[str, float]:
    """Accuracy, reward mean/std over all ``2N`` scores, mean margin and ECE."""
    scores = torch.cat([chosen, rejected]).double()
    ece, _ = pairwise_calibration(chosen, rejected, n_bins)
    return {"accuracy": pairwise_accuracy(chosen, rejected),
            "reward_mean": float(scores.mean()), "reward_std": float(scores.std(correction=0)),
            "margin_mean": float((chosen.double() - rejected.double()).mean()), "ece": ece,
            "pairs": int(chosen.numel())}


def length_metrics(chosen: torch.Tensor, rejected: torch.Tensor, records: Sequence[dict]
                   ) -> dict[str, float]:
    """Pearson(score, words) over all responses, and the accuracy of "longer wins"."""
    chosen_words = word_lengths([r["chosen"] for r in records])
    rejected_words = word_lengths([r["rejected"] for r in records])
    return {"length_score_pearson": pearson(torch.cat([chosen, rejected]),
                                            torch.cat([chosen_words, rejected_words])),
            "longer_wins_accuracy": pairwise_accuracy(chosen_words, rejected_words)}


def accuracy_by_perturbation(chosen: torch.Tensor, rejected: torch.Tensor,
                              records: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Pairwise accuracy per ``metadata.perturbation`` (empty when no record has one)."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        kind = (record.get("metadata") or {}).get("perturbation")
        if kind is not None:
            groups.setdefault(str(kind), []).append(index)
    return {kind: {"pairs": len(rows),
                   "accuracy": pairwise_accuracy(chosen[rows], rejected[rows])}
            for kind, rows in sorted(groups.items())}


def evaluate_reward_model(model, records: Sequence[dict], out_dir: str | Path,
                          batch_size: int = 16, probe_limit: int | None = 200) -> dict[str, Any]:
    """Every diagnostic of a ``RewardModel`` on preference ``records``.

    Writes ``out_dir/rm_eval.json``, ``out_dir/figures/rm_score_histogram.png``
    and ``out_dir/figures/rm_reliability.png``; returns the json's content. The
    filler probe uses the first ``probe_limit`` pairs (all when None), both
    responses of each. Ensembles are judged by their member mean, and the
    penalised score's accuracy and the mean member std are added.
    """
    from prefalign.engine.rundir import atomic_write_json
    from prefalign.report.figures import reliability_diagram, score_histogram

    if not records:
        raise DataError("no preference pairs to evaluate")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    prompts = [r["prompt"] for r in records]
    responses = [r["chosen"] for r in records] + [r["rejected"] for r in records]
    scored = model.score_ensemble(prompts + prompts, responses, batch_size)
    n = len(records)
    chosen, rejected = scored.mean[:n], scored.mean[n:]
    ece, bins = pairwise_calibration(chosen, rejected)
    result: dict[str, Any] = {**pairwise_metrics(chosen, rejected),
                              **length_metrics(chosen, rejected, records)}
    by_kind = accuracy_by_perturbation(chosen, rejected, records)
    if by_kind:
        result["accuracy_by_perturbation"] = by_kind
    if scored.members.shape[0] > 1:
        result.update(members=int(scored.members.shape[0]), penalty=scored.penalty,
                      ensemble_std_mean=float(scored.std.mean()),
                      penalised_accuracy=pairwise_accuracy(scored.penalised[:n],
                                                           scored.penalised[n:]))
    probed = n if probe_limit is None else min(n, probe_limit)
    probe_prompts = prompts[:probed] + prompts[:probed]
    probe_responses = responses[:probed] + responses[n:n + probed]
    base = torch.cat([chosen[:probed], rejected[:probed]])
    result["filler_probe"] = {
        **filler_probe(lambda p, r: model.score_ensemble(p, r, batch_size).mean,
                       probe_prompts, probe_responses, base_scores=base),
        "responses": len(probe_responses)}
    result["calibration_bins"] = bins
    figures = out_dir / "figures"
    result["figures"] = {
        "histogram": str(score_histogram(chosen, rejected, figures / "rm_score_histogram.png")),
        "reliability": str(reliability_diagram(
            bins, ece, figures / "rm_reliability.png",
            subtitle=f"{n} held-out pairs, each counted in both orders")),
    }
    result["eval_time_s"] = round(time.perf_counter() - started, 2)
    atomic_write_json(out_dir / "rm_eval.json", result)
    return result
