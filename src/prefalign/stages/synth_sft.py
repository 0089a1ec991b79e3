"""Synthetic SFT data: sample responses to seed prompts, keep what a judge accepts.

Rejection sampling for fine-tuning data, as in STaR (Zelikman et al. 2022,
"STaR: Bootstrapping Reasoning With Reasoning"), RAFT (Dong et al. 2023) and
ReST (Gulcehre et al. 2023): for each seed prompt ``x`` the policy samples
``K`` responses ``y_1..y_K``; a pointwise judge scores each, and ``(x, y_k)``
becomes an SFT row ``{prompt, completion}`` iff ``score(x, y_k) ≥ threshold``.
A task verifier is the judge with threshold 1 (a strict pass; partial credit
is never kept). Empty responses and repeats of a text already sampled for the
same prompt are not scored. The score and the judge's name go in each row's
``metadata``.

Scored prompts go to a journal, ``<out>.samples.jsonl`` (``stages.journal``),
chunk by chunk, so a killed run resumes where it stopped; ``out`` is written
from it at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefalign.data.load import write_jsonl
from prefalign.errors import DataError, PrefalignError
from prefalign.stages.feedback import distinct_responses
from prefalign.stages.journal import Journal
from prefalign.stages.sampling import Sampler, chunk_seed, chunks, prompt_as_text


@dataclass
class SynthSummary:
    """Responses scored, rows kept, prompts, and prompts with at least one row kept."""

    scored: int
    kept: int
    prompts: int
    prompts_kept: int

    def line(self) -> str:
        rate = self.kept / self.scored if self.scored else 0.0
        return (f"kept {self.kept}/{self.scored} responses ({rate:.1%}) covering "
                f"{self.prompts_kept}/{self.prompts} prompts")


def samples_journal_path(out: Path) -> Path:
    return out.with_name(out.stem + ".samples.jsonl")


def check_fields(judge, records: Sequence[dict], source: str) -> None:
    """Every record carries the fields the judge reads, else a DataError naming the first
    record (its line, for a JSONL file) and the field."""
    for line, record in enumerate(records, start=1):
        for name in getattr(judge, "required_fields", ()):
            if name not in record and name not in (record.get("metadata") or {}):
                raise DataError(f"missing field that judge '{judge.name}' reads", file=source,
                                line=line, field=name)


def score_chunk(judge, records: Sequence[dict], indices: Sequence[int],
                groups: Sequence[Sequence[str]], threshold: float) -> list[dict]:
    """Journal entries: for each prompt, its kept rows and how many responses were scored."""
    asked = [(slot, k) for slot, group in enumerate(groups) for k in distinct_responses(group)]
    scores = judge.score([prompt_as_text(records[slot]["prompt"]) for slot, _ in asked],
                         [groups[slot][k] for slot, k in asked],
                         [records[slot] for slot, _ in asked]) if asked else []
    entries = [{"prompt_index": index, "scored": 0, "rows": []} for index in indices]
    for (slot, k), value in zip(asked, scores):
        entries[slot]["scored"] += 1
        if float(value) >= threshold:
            entries[slot]["rows"].append({
                "prompt": records[slot]["prompt"], "completion": groups[slot][k],
                "metadata": {"score": float(value), "judge": judge.name, "sample": k,
                             "prompt_index": indices[slot]}})
    return entries


def synth_sft(records: Sequence[dict], sampler: Sampler, judge, out: Path, *,
              threshold: float, settings: dict, chunk_size: int = 8, seed: int = 0,
              on_progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Write the SFT rows of ``records`` that ``judge`` accepts to ``out``."""
    if not hasattr(judge, "score"):
        raise PrefalignError(f"judge '{getattr(judge, 'name', judge)}' is not pointwise: "
                             f"synth-sft needs a reward model or a verifier")
    journal = Journal(samples_journal_path(out), {**settings, "seed": seed,
                                                  "chunk_size": chunk_size,
                                                  "threshold": threshold})
    for number, indices in enumerate(chunks(len(records), chunk_size)):
        todo = [i for i in indices if i not in journal.entries]
        if todo:
            groups = sampler([records[i] for i in indices], chunk_seed(seed, number))
            journal.append(score_chunk(judge, [records[i] for i in todo], todo,
                                       [groups[indices.index(i)] for i in todo], threshold))
        if on_progress is not None:
            on_progress(len(journal.entries), len(records))
    entries = journal.ordered()
    rows = [row for entry in entries for row in entry["rows"]]
    write_jsonl(rows, out)
    return SynthSummary(scored=sum(e["scored"] for e in entries), kept=len(rows),
                        prompts=len(records), prompts_kept=sum(bool(e["rows"]) for e in entries))
