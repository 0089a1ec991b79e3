"""The StrategyQA pipeline's data stage: content-disjoint question sets for every phase.

The training split is deduplicated by ``content_key`` and shuffled with the
pipeline seed, then cut into validation, supervised (Phases A and B) and draft
(Phase C) questions, in that order, so no question sits in two of them. An
evaluation question whose content also occurs in training is dropped (and
counted). Phases A and B train on the same questions, so their accuracies
compare the reply format, not the data.
"""

from __future__ import annotations

import random
from pathlib import Path

from prefalign.data.load import write_jsonl
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import ConfigError
from prefalign.intervals import wilson_interval
from prefalign.pipeline.strategyqa.config import StrategyQADataConfig
from prefalign.tasks.strategyqa import completion_of, content_key, load_strategyqa, prompt_of


def _unique(records: list[dict]) -> list[dict]:
    seen: set[str] = set()
    kept = []
    for record in records:
        key = content_key(record)
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def split_questions(cfg: StrategyQADataConfig, seed: int) -> dict[str, list[dict]]:
    """``{"validation", "sft", "draft", "eval"}`` records, pairwise content-disjoint."""
    train = _unique(load_strategyqa(cfg.path, cfg.train_split))
    random.Random(seed).shuffle(train)
    needed = cfg.validation_questions + cfg.sft_questions + cfg.draft_questions
    if needed > len(train):
        raise ConfigError(f"data: validation_questions + sft_questions + draft_questions = "
                          f"{needed}, but {cfg.path} ({cfg.train_split}) has {len(train)} "
                          f"distinct questions")
    cut1 = cfg.validation_questions
    cut2 = cut1 + cfg.sft_questions
    trained = {content_key(r) for r in train[:needed]}
    evaluation = [r for r in _unique(load_strategyqa(cfg.path, cfg.eval_split))
                  if content_key(r) not in trained]
    if cfg.eval_questions is not None:
        evaluation = evaluation[:cfg.eval_questions]
    return {"validation": train[:cut1], "sft": train[cut1:cut2],
            "draft": train[cut2:needed], "eval": evaluation}


def _sft_rows(records: list[dict], style: str, max_facts: int) -> list[dict]:
    return [{"prompt": prompt_of(r, style), "completion": completion_of(r, style, max_facts),
             "qid": r["qid"]} for r in records]


def build_strategyqa_data(cfg: StrategyQADataConfig, out_dir: Path, seed: int) -> dict:
    """Write every phase's records under ``out_dir``; return the counts and baselines."""
    splits = split_questions(cfg, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for style in ("answer", "reasoning"):
        for part, name in (("sft", "train"), ("validation", "validation")):
            write_jsonl(_sft_rows(splits[part], style, cfg.max_facts),
                        out_dir / f"{style}_{name}.jsonl")
    for part in ("validation", "draft", "eval"):
        write_jsonl(splits[part], out_dir / f"{part}_questions.jsonl")
    evaluation = splits["eval"]
    no_share = sum(not r["answer"] for r in evaluation)
    majority = max(no_share, len(evaluation) - no_share)
    low, high = wilson_interval(majority, len(evaluation))
    summary = {"counts": {name: len(records) for name, records in splits.items()},
               "majority_baseline": {"answer": "no" if 2 * no_share >= len(evaluation)
                                     else "yes", "k": majority, "n": len(evaluation),
                                     "rate": majority / max(len(evaluation), 1),
                                     "ci95": [low, high]},
               "train_yes_share": sum(r["answer"] for r in splits["sft"])
               / max(len(splits["sft"]), 1)}
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
