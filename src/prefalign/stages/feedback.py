"""AI feedback: preference pairs labelled by a judge that reads a constitution.

Constitutional AI (Bai et al. 2022, "Constitutional AI: Harmlessness from AI
Feedback") replaces human preference labels by a model's choice between two
samples, guided by a short list of written principles; RLAIF (Lee et al. 2023,
"RLAIF: Scaling Reinforcement Learning from Human Feedback with AI Feedback")
shows such labels train reward models comparable to human ones, and that the
judge's confidence can filter them. Here, for each prompt:

1. the policy samples ``K ≥ 2`` responses (``sampling.Sampler``); empty and
   duplicate texts are dropped (fewer than two distinct ones: the prompt is
   skipped and the reason recorded);
2. a pairwise judge, whose rubric is the constitution (``constitution_rubric``:
   the principles, then the conversation and responses A and B), compares every pair
   ``(i, j), i < j`` in both orders (``PairwiseVerdict``); with ``p_ij`` the
   probability that ``i`` is better, each sample's round-robin score is
   ``s_i = mean_{j≠i} p_ij``; the best and the worst by ``s`` (lowest index on a
   tie) are the pair. For ``K = 2`` this is the one comparison;
3. the pair is oriented by its own direct comparison, so a label never
   contradicts the judge: ``chosen`` is the side with ``p ≥ ½``. The row's
   ``metadata`` holds ``p_first`` (the judge's probability, averaged over both
   orders, that the lower-indexed sample of the two is better), ``p_chosen =
   max(p_first, 1 − p_first)``, ``confidence = |p_first − ½|·2 = 2·p_chosen − 1``,
   ``tie`` and ``position_consistent`` (both orders prefer the same response),
   the judge's name, the sample indices and the prompt's index in the input.
   The average over both orders cancels a judge's constant preference for one
   position, so a pair whose orders disagree still has a confidence (a small
   judge is rarely position-consistent); a consumer that wants Zheng et al.'s
   conservative rule keeps ``position_consistent`` pairs only.

Every processed prompt is appended at once to a journal, ``<out>.labels.jsonl``
(first line: the settings that produced it), so a killed run loses nothing and
a re-run with the same settings skips the prompts already there (a chunk cut
short is sampled again whole, with its seed: the same samples, and only its
missing prompts are judged); a re-run with other settings is refused. ``out``
holds the pairs with ``confidence ≥ min_confidence`` (all of them without a
threshold); ``random_control`` a same-size subset of all labelled pairs drawn
with ``seed``, the chance baseline against which the confidence filter is
judged. Both are pure functions of the journal, so a re-run with another
threshold relabels nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from prefalign.data.load import write_jsonl
from prefalign.errors import PrefalignError
from prefalign.stages.journal import Journal
from prefalign.stages.sampling import Sampler, chunk_seed, chunks, prompt_as_text

Progress = Callable[[int, int], None]
PLACEHOLDERS = ("{prompt}", "{response_a}", "{response_b}")
RUBRIC_TEMPLATE = """You are comparing two responses of an AI assistant to the same conversation.
Choose the response that better follows these principles:

{principles}

[Conversation]
{prompt}

[Response A]
{response_a}

[Response B]
{response_b}

Which response better follows the principles? Answer with a single letter: A or B.
"""


def default_constitution() -> str:
    """The packaged constitution: a short list of helpfulness and harmlessness principles."""
    return resources.files("prefalign").joinpath("resources/constitution.md").read_text()


def constitution_rubric(constitution: str) -> str:
    """A pairwise judge's rubric from a constitution: its principles set in a question that
    shows the conversation and responses A and B. A constitution that already holds the
    placeholders ``{prompt}``, ``{response_a}``, ``{response_b}`` is the rubric itself."""
    if all(p in constitution for p in PLACEHOLDERS):
        return constitution
    return RUBRIC_TEMPLATE.replace("{principles}", constitution.strip())


@dataclass
class LabelSummary:
    """Counts of one labelling run: prompts in the input, prompts labelled (a pair
    written to the journal), prompts skipped, pairs kept by the filter, control size,
    and prompts found done in the journal at the start."""

    prompts: int
    labelled: int
    skipped: int
    kept: int
    control: int
    resumed: int

    def line(self) -> str:
        return (f"{self.labelled} pairs from {self.prompts} prompts ({self.skipped} skipped, "
                f"{self.resumed} already labelled); kept {self.kept}"
                + (f"; random control {self.control}" if self.control else ""))


def journal_path(out: Path) -> Path:
    """Where every processed prompt of ``out`` is recorded."""
    return out.with_name(out.stem + ".labels.jsonl")


def distinct_responses(texts: Sequence[str]) -> list[int]:
    """Indices of the first occurrence of each distinct non-empty text."""
    seen: set[str] = set()
    keep = []
    for index, text in enumerate(texts):
        if text and text not in seen:
            seen.add(text)
            keep.append(index)
    return keep


def round_robin(count: int, p: dict[tuple[int, int], float]) -> tuple[int, int]:
    """``(best, worst)`` of ``count`` candidates by mean win probability
    ``s_i = mean_{j≠i} P(i beats j)``, where ``p[(i, j)]`` (``i < j``) is P(i beats j);
    equal scores rank the lower index first."""
    def win(i: int, j: int) -> float:
        return p[(i, j)] if i < j else 1.0 - p[(j, i)]

    scores = [sum(win(i, j) for j in range(count) if j != i) / (count - 1)
              for i in range(count)]
    order = sorted(range(count), key=lambda i: (-scores[i], i))
    return order[0], order[-1]


def _pair_row(record: dict, index: int, texts: list[str], sample_ids: list[int],
              best: int, worst: int, verdict, judge_name: str) -> dict:
    """The preference row of candidates ``best`` and ``worst`` (``verdict``: the
    judge's comparison of the lower-indexed one, as A, with the other)."""
    first, second = min(best, worst), max(best, worst)
    chosen, rejected = (first, second) if verdict.p_first >= 0.5 else (second, first)
    p_chosen = max(verdict.p_first, 1.0 - verdict.p_first)
    confidence = abs(verdict.p_first - 0.5) * 2
    metadata = {"confidence": confidence, "judge": judge_name, "p_first": verdict.p_first,
                "p_chosen": p_chosen, "tie": bool(verdict.tie),
                "position_consistent": not verdict.position_flip,
                "chosen_sample": sample_ids[chosen], "rejected_sample": sample_ids[rejected],
                "samples": len(texts), "prompt_index": index}
    return {"prompt": record["prompt"], "chosen": texts[sample_ids[chosen]],
            "rejected": texts[sample_ids[rejected]], "metadata": metadata}


def label_chunk(judge, records: Sequence[dict], indices: Sequence[int],
                groups: Sequence[Sequence[str]]) -> list[dict]:
    """Journal entries for prompts ``indices`` with sampled ``groups``: one judge call
    for every candidate pair of the chunk, then a pair (or a skip) per prompt."""
    candidates = [distinct_responses(group) for group in groups]
    asked: list[tuple[int, int, int]] = []
    for slot, ids in enumerate(candidates):
        asked.extend((slot, i, j) for i in range(len(ids)) for j in range(i + 1, len(ids)))
    verdicts = judge.compare(
        [prompt_as_text(records[slot]["prompt"]) for slot, _, _ in asked],
        [groups[slot][candidates[slot][i]] for slot, i, _ in asked],
        [groups[slot][candidates[slot][j]] for slot, _, j in asked]) if asked else []
    by_slot: dict[int, dict[tuple[int, int], object]] = {}
    for (slot, i, j), verdict in zip(asked, verdicts):
        by_slot.setdefault(slot, {})[(i, j)] = verdict
    entries = []
    for slot, (index, ids) in enumerate(zip(indices, candidates)):
        if len(ids) < 2:
            entries.append({"prompt_index": index, "pair": None,
                            "skipped": "fewer than two distinct non-empty responses"})
            continue
        table = by_slot[slot]
        best, worst = round_robin(len(ids), {k: v.p_first for k, v in table.items()})
        verdict = table[(min(best, worst), max(best, worst))]
        row = _pair_row(records[slot], index, list(groups[slot]), ids, best, worst, verdict,
                        judge.name)
        entries.append({"prompt_index": index, "pair": row, "skipped": None})
    return entries


def filtered(pairs: list[dict], min_confidence: float | None) -> list[dict]:
    """The pairs whose confidence is at least ``min_confidence`` (all without one)."""
    if min_confidence is None:
        return list(pairs)
    return [row for row in pairs if row["metadata"]["confidence"] >= min_confidence]


def random_subset(pairs: list[dict], size: int, seed: int) -> list[dict]:
    """``size`` of ``pairs`` drawn without replacement with ``random.Random(seed)``,
    in their original order."""
    picked = sorted(random.Random(seed).sample(range(len(pairs)), size))
    return [pairs[i] for i in picked]


@dataclass(frozen=True)
class LabelOutput:
    """Where labels go: the kept pairs, an optional random control, the threshold,
    and the seed of the control's draw."""

    out: Path
    min_confidence: float | None = None
    random_control: Path | None = None
    seed: int = 0


def _finish(journal: Journal, output: LabelOutput, count: int, resumed: int) -> LabelSummary:
    entries = [e for e in journal.ordered() if e["prompt_index"] < count]
    pairs = [e["pair"] for e in entries if e["pair"] is not None]
    kept = filtered(pairs, output.min_confidence)
    write_jsonl(kept, output.out)
    control = []
    if output.random_control is not None:
        control = random_subset(pairs, len(kept), output.seed)
        write_jsonl(control, output.random_control)
    return LabelSummary(prompts=count, labelled=len(pairs), skipped=len(entries) - len(pairs),
                        kept=len(kept), control=len(control), resumed=resumed)


def label_prompts(records: Sequence[dict], sampler: Sampler, judge, output: LabelOutput, *,
                  settings: dict, chunk_size: int = 8, seed: int = 0, limit: int | None = None,
                  on_progress: Progress | None = None) -> LabelSummary:
    """Label ``records`` (prompt records) as described in the module docstring.

    ``settings`` identify the run in the journal (model, judge, constitution,
    sampling, the prompts' fingerprint); ``chunk_size`` prompts are sampled and
    judged together, chunk ``c`` with seed ``chunk_seed(seed, c)``; ``limit``
    labels (and writes) only the first ``limit`` prompts, so a later run with a
    larger one continues (a chunk is always sampled whole, so the samples do not
    depend on ``limit``); ``on_progress(done, total)`` is called after each chunk.
    """
    if not getattr(judge, "compare", None):
        raise PrefalignError(f"judge '{getattr(judge, 'name', judge)}' is not pairwise: "
                             f"labelling needs a pairwise judge (lm:MODEL or http:URL)")
    count = len(records) if limit is None else min(limit, len(records))
    journal = Journal(journal_path(output.out), {**settings, "seed": seed,
                                                 "chunk_size": chunk_size})
    resumed = sum(1 for i in journal.entries if i < count)
    write_jsonl(filtered([e["pair"] for e in journal.ordered()
                          if e["pair"] is not None and e["prompt_index"] < count],
                         output.min_confidence), output.out)
    for number, indices in enumerate(chunks(count, chunk_size)):
        todo = [i for i in indices if i not in journal.entries]
        if todo:
            whole = range(indices.start, min(indices.start + chunk_size, len(records)))
            groups = sampler([records[i] for i in whole], chunk_seed(seed, number))
            entries = label_chunk(judge, [records[i] for i in todo], todo,
                                  [groups[i - whole.start] for i in todo])
            journal.append(entries)
            _append_kept(output, entries)
        if on_progress is not None:
            on_progress(sum(1 for i in journal.entries if i < count), count)
    return _finish(journal, output, count, resumed)


def _append_kept(output: LabelOutput, entries: list[dict]) -> None:
    pairs = filtered([e["pair"] for e in entries if e["pair"] is not None],
                     output.min_confidence)
    with output.out.open("a", encoding="utf-8") as handle:
        for row in pairs:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
