"""The drafts stage: the Phase-B model drafts, and Phase C's pairs are built from its drafts.

The Phase-B model answers the reasoning prompt greedily (its clarifying
sub-questions, facts and answer: the draft) for the draft questions, the
validation questions and the evaluation questions — none of which it trained
on. Each drafted training or validation question becomes one pair
(``prefalign.tasks.strategyqa.draft_pair``): prompt = question + " Student
draft: " + draft; chosen = the reference rationale with the correct answer;
rejected = the draft when wrong, the draft with its answer flipped when right.
The evaluation drafts are kept for the evaluation (they are Phase B's dev
replies, so Phase B's accuracy is theirs) and for the ablations.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefalign.data.load import write_jsonl
from prefalign.engine.rundir import atomic_write_json
from prefalign.intervals import wilson_interval
from prefalign.pipeline.strategyqa.config import StrategyQAPipelineConfig
from prefalign.pipeline.strategyqa.generation import generate_to_file
from prefalign.tasks.strategyqa import draft_pair, read_yes_no
from prefalign.tasks.strategyqa.formats import reasoning_prompt


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def accuracy(k: int, n: int) -> dict:
    """``{"k", "n", "rate", "ci95"}`` with the Wilson interval."""
    low, high = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else 0.0, "ci95": [low, high]}


def run_drafts(cfg: StrategyQAPipelineConfig, model_path: Path, data_dir: Path,
               out_dir: Path) -> dict:
    """Draft on every question set; write the pairs, the evaluation drafts and a summary."""
    from prefalign.models.load import load_model

    sets = {name: read_records(data_dir / f"{name}_questions.jsonl")
            for name in ("draft", "validation", "eval")}
    lm, tokenizer = load_model(str(model_path), dtype=cfg.dtype)
    items = [(record["qid"], reasoning_prompt(record["question"]))
             for records in sets.values() for record in records]
    drafts = generate_to_file(lm, tokenizer, items, out_dir / "generated.jsonl",
                              max_new_tokens=cfg.drafts.max_new_tokens,
                              batch_size=cfg.drafts.batch_size,
                              use_chat_template=cfg.use_chat_template, label="drafts")
    max_facts = cfg.data.max_facts
    write_jsonl([draft_pair(r, drafts[r["qid"]], max_facts) for r in sets["draft"]],
                out_dir / "pairs_train.jsonl")
    write_jsonl([draft_pair(r, drafts[r["qid"]], max_facts) for r in sets["validation"]],
                out_dir / "pairs_validation.jsonl")
    write_jsonl([{**r, "draft": drafts[r["qid"]], "draft_answer": read_yes_no(drafts[r["qid"]])}
                 for r in sets["eval"]], out_dir / "eval_drafts.jsonl")
    summary = {}
    for name, records in sets.items():
        answers = [read_yes_no(drafts[r["qid"]]) for r in records]
        summary[name] = {"accuracy": accuracy(sum(a == r["answer"] for a, r in
                                                  zip(answers, records)), len(records)),
                         "no_answer": sum(a is None for a in answers),
                         "says_yes": sum(a is True for a in answers)}
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
