"""Process vs outcome reward models on step-labelled solutions (``prefalign eval prm``).

For each model, on ``steps`` records (``prefalign.tasks.gsm8k_steps``: reference
solutions and perturbations with a known first wrong step):

* **step accuracy** (``p_k > 0.5`` against the step label) and **AUROC** of the
  step probabilities (Mann–Whitney: P(p of a sound step > p of an unsound
  one), ties ½), with a bootstrap interval over solutions;
* **first-error localisation**: on solutions with an error, the share whose
  first step with ``p_k < 0.5`` is the labelled first wrong step;
* **the critical case**: solutions whose final answer is right but a step is
  wrong (those marked ``critical``, the constructed ones, when records say); the
  share *flagged* (solution score < 0.5 under the model's
  aggregation) — beside the share of sound reference solutions flagged, since
  a model that flags everything would otherwise look perfect — and the share
  flagged at a matched operating point: below the score that flags 10% of the
  sound references, the same false-flag rate for every model;
* **best-of-n on constructed candidate sets**: per problem, the reference and
  its perturbations; the top-scored candidate is *correct and sound* when it is
  the reference, *correct* when its final answer is right.

``rerank_samples`` scores a policy's own sampled solutions (split into lines)
and reports pass@1 after reranking by each model, majority vote over final
answers, the first sample's pass rate and the oracle pass@n. Shares carry 95%
Wilson intervals.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

import torch

from prefalign.intervals import wilson_interval
from prefalign.losses.process import aggregate
from prefalign.tasks.gsm8k import answers_match, completion_answer, normalize_number

CRITICAL_FLAG_THRESHOLD = 0.5
MATCHED_FALSE_FLAGS = 0.1  # the operating point: 10% of sound references flagged


def share(k: int, n: int) -> dict:
    """``{"k", "n", "rate", "ci95"}`` with the Wilson interval."""
    low, high = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else 0.0, "ci95": [low, high]}


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """P(score of a positive > score of a negative), ties counted ½ (average ranks)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _bootstrap_auroc(per_solution: list[tuple[list[float], list[int]]], seed: int = 0,
                     resamples: int = 200) -> list[float]:
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        picked = [per_solution[rng.randrange(len(per_solution))] for _ in per_solution]
        scores = [s for p, _ in picked for s in p]
        labels = [y for _, ys in picked for y in ys]
        value = auroc(scores, labels)
        if value == value:
            values.append(value)
    values.sort()
    if not values:
        return [float("nan"), float("nan")]
    return [values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]]


def first_flagged(probabilities: torch.Tensor) -> int | None:
    """The first step with probability below the flag threshold, or ``None``."""
    below = (probabilities < CRITICAL_FLAG_THRESHOLD).nonzero()
    return int(below[0]) if len(below) else None


def evaluate_steps(records: Sequence[dict], probabilities: Sequence[torch.Tensor],
                   aggregation: str) -> dict:
    """Every figure of the module docstring for one model's step probabilities."""
    # a solution longer than the model reads was scored on the steps that fit
    per_solution = [(p.tolist(), list(r["labels"])[:len(p)])
                    for p, r in zip(probabilities, records)]
    scores = [s for p, _ in per_solution for s in p]
    labels = [y for _, ys in per_solution for y in ys]
    right = sum((s > CRITICAL_FLAG_THRESHOLD) == bool(y) for s, y in zip(scores, labels))
    erroneous = [(p, r) for p, r in zip(probabilities, records) if r.get("first_wrong") is not None]
    localised = sum(first_flagged(p) == r["first_wrong"] for p, r in erroneous)
    solution = [aggregate(p, aggregation) for p in probabilities]
    flagged = [s < CRITICAL_FLAG_THRESHOLD for s in solution]
    critical = [i for i, r in enumerate(records)
                if r.get("critical", r["final_correct"] and 0 in r["labels"])]
    sound = [i for i, r in enumerate(records) if all(r["labels"])]
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record, flag in zip(records, flagged):
        by_kind[record.get("kind", "?")][0] += flag
        by_kind[record.get("kind", "?")][1] += 1
    matched = matched_threshold(solution, sound, MATCHED_FALSE_FLAGS)
    return {"aggregation": aggregation, "solutions": len(records), "steps": len(labels),
            "step_accuracy": share(right, len(labels)),
            "auroc": auroc(scores, labels), "auroc_ci95": _bootstrap_auroc(per_solution),
            "first_error_localisation": share(localised, len(erroneous)),
            "critical_flagged": share(sum(flagged[i] for i in critical), len(critical)),
            "sound_flagged": share(sum(flagged[i] for i in sound), len(sound)),
            "critical_flagged_matched": share(sum(solution[i] < matched for i in critical),
                                              len(critical)),
            "matched_threshold": matched,
            "flagged_by_kind": {k: share(*v) for k, v in sorted(by_kind.items())},
            "best_of_n": best_of_constructed(records, solution)}


def matched_threshold(scores: Sequence[float], sound: Sequence[int], rate: float) -> float:
    """The score below which ``rate`` of the sound solutions fall (their ``rate`` quantile,
    lower nearest rank), so models are compared at the same false-flag rate."""
    ordered = sorted(scores[i] for i in sound)
    if not ordered:
        return CRITICAL_FLAG_THRESHOLD
    return ordered[min(int(rate * len(ordered)), len(ordered) - 1)]


def best_of_constructed(records: Sequence[dict], scores: Sequence[float]) -> dict:
    """Top-1 of each problem's candidate set: correct-and-sound and correct-answer rates."""
    groups: dict[object, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[record.get("problem", record["prompt"])].append(index)
    sets = [members for members in groups.values() if len(members) > 1]
    picks = [max(members, key=lambda i: scores[i]) for members in sets]
    return {"sets": len(sets),
            "mean_candidates": sum(map(len, sets)) / max(len(sets), 1),
            "correct_and_sound": share(sum(all(records[i]["labels"]) for i in picks),
                                       len(picks)),
            "correct_answer": share(sum(bool(records[i]["final_correct"]) for i in picks),
                                    len(picks))}


def solution_steps(completion: str) -> list[str]:
    """A sampled solution's steps: its non-empty lines before a ``####`` line."""
    body = completion.split("####", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip()]


def majority_answer(completions: Sequence[str]) -> str | None:
    """The most common final answer (as a number); ties go to the first seen."""
    answers = []
    for text in completions:
        raw = completion_answer(text)
        value = normalize_number(raw) if raw is not None else None
        if value is not None:
            answers.append(value)
    if not answers:
        return None
    counts = Counter(answers)
    best = max(counts.values())
    return str(next(a for a in answers if counts[a] == best))


def rerank_samples(problems: Sequence[dict], samples: Sequence[Sequence[str]],
                   model_scores: dict[str, Sequence[Sequence[float]]]) -> dict:
    """pass@1 of the first sample, of each model's top-scored sample, of the majority answer,
    and the oracle pass@n; ``model_scores[name][i][j]`` scores sample j of problem i."""
    n = len(problems)
    correct = [[answers_match(text, str(p["answer"])) for text in group]
               for p, group in zip(problems, samples)]
    rows = {"first sample": share(sum(c[0] for c in correct if c), n),
            "majority vote": share(sum(
                (m := majority_answer(group)) is not None and answers_match(
                    f"#### {m}", str(p["answer"])) for p, group in zip(problems, samples)), n),
            "oracle pass@n": share(sum(any(c) for c in correct), n)}
    for name, scores in model_scores.items():
        picks = [max(range(len(s)), key=lambda j: s[j]) if s else 0 for s in scores]
        rows[f"{name} rerank"] = share(sum(c[j] for c, j in zip(correct, picks) if c), n)
    return {"problems": n, "samples_per_problem": max((len(g) for g in samples), default=0),
            "pass_at_1": rows}


def _cell(part: dict) -> str:
    low, high = part["ci95"]
    return f"{part['rate']:.3f} [{low:.3f}, {high:.3f}] ({part['k']}/{part['n']})"


def markdown_table(summary: dict) -> str:
    """The comparison as Markdown: one column per model, then the reranked samples."""
    models = summary["models"]
    names = list(models)
    lines = [f"Step-labelled solutions: {summary['solutions']} "
             f"({summary['problems']} problems). Shares with 95% Wilson intervals.", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    rows = [("objective / aggregation",
             lambda m: f"{m['objective']} / {m['aggregation']}"),
            ("critical case flagged (right answer, wrong step)",
             lambda m: _cell(m["critical_flagged"])),
            ("sound references flagged", lambda m: _cell(m["sound_flagged"])),
            ("critical case flagged at 10% sound flagged",
             lambda m: _cell(m["critical_flagged_matched"])),
            ("step accuracy", lambda m: _cell(m["step_accuracy"])),
            ("step AUROC", lambda m: f"{m['auroc']:.3f} [{m['auroc_ci95'][0]:.3f}, "
                                     f"{m['auroc_ci95'][1]:.3f}]"),
            ("first-error localisation", lambda m: _cell(m["first_error_localisation"])),
            ("best-of-n top-1 correct and sound",
             lambda m: _cell(m["best_of_n"]["correct_and_sound"])),
            ("best-of-n top-1 correct answer",
             lambda m: _cell(m["best_of_n"]["correct_answer"]))]
    lines += [f"| {label} | " + " | ".join(cell(models[n]) for n in names) + " |"
              for label, cell in rows]
    kinds = sorted({k for m in models.values() for k in m["flagged_by_kind"]})
    lines += ["", "Flagged (solution score < 0.5) by kind of solution:", "",
              "| kind | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {kind} | " + " | ".join(_cell(models[n]["flagged_by_kind"][kind])
                                         if kind in models[n]["flagged_by_kind"] else "–"
                                         for n in names) + " |" for kind in kinds]
    samples = summary.get("samples")
    if samples:
        lines += ["", f"The policy's own samples: {samples['problems']} problems × "
                  f"{samples['samples_per_problem']} samples.", "", "| selection | pass@1 |",
                  "|---|---|"]
        lines += [f"| {name} | {_cell(part)} |" for name, part in samples["pass_at_1"].items()]
    return "\n".join(lines) + "\n"
