"""The self-guided loop: the Phase-C model drafts again, the pairs are rebuilt from its
drafts, and one more DPO epoch runs from the Phase-C weights.

The current (Phase-C) model drafts greedily on the reasoning prompt — the question
alone — for the same draft and validation questions as Phase C; each draft becomes
a pair by Phase C's flip rule (``draft_pair``: chosen = the reference rationale,
rejected = the draft when wrong, the draft with its answer flipped when right).
One DPO phase (``self_guided``; by default Dr-DPO, β = 0.1, the 15% noisiest pairs
dropped) runs from the Phase-C adapter with a new LoRA whose disabled state — the
Phase-C model — is the reference, as in iterative DPO where each round's reference
is the previous round's policy (Xu et al. 2023, "Some things are more CRINGE than
others"; Yuan et al. 2024, "Self-Rewarding Language Models"). The new model is then
scored like Phase C: with Phase B's dev drafts (row ``C_self_guided``, comparable to
C) and with no draft. Generation and training resume after a kill.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from prefalign.config import PreferenceConfig
from prefalign.data.load import write_jsonl
from prefalign.engine.rundir import atomic_write_json
from prefalign.pipeline.strategyqa.config import StrategyQAPipelineConfig
from prefalign.pipeline.strategyqa.drafts import accuracy, read_records
from prefalign.pipeline.strategyqa.generation import generate_to_file
from prefalign.tasks.strategyqa import draft_pair, read_yes_no
from prefalign.tasks.strategyqa.formats import draft_prompt, reasoning_prompt

ROWS = ("C_self_guided", "C_self_guided_no_draft")


def redraft(cfg: StrategyQAPipelineConfig, model_path: Path, data_dir: Path,
            out_dir: Path) -> dict:
    """Draft with ``model_path`` on the draft and validation questions; write the rebuilt
    pairs (``pairs_train.jsonl``, ``pairs_validation.jsonl``); the drafts' accuracy."""
    from prefalign.models.load import load_model

    sets = {name: read_records(data_dir / f"{name}_questions.jsonl")
            for name in ("draft", "validation")}
    lm, tokenizer = load_model(str(model_path), dtype=cfg.dtype)
    drafts = generate_to_file(lm, tokenizer,
                              [(r["qid"], reasoning_prompt(r["question"]))
                               for records in sets.values() for r in records],
                              out_dir / "generated.jsonl",
                              max_new_tokens=cfg.drafts.max_new_tokens,
                              batch_size=cfg.drafts.batch_size,
                              use_chat_template=cfg.use_chat_template, label="self-guided drafts")
    summary = {}
    for name, file in (("draft", "pairs_train.jsonl"), ("validation", "pairs_validation.jsonl")):
        records = sets[name]
        write_jsonl([draft_pair(r, drafts[r["qid"]], cfg.data.max_facts) for r in records],
                    out_dir / file)
        answers = [read_yes_no(drafts[r["qid"]]) for r in records]
        summary[name] = {"accuracy": accuracy(sum(a == r["answer"] for a, r in
                                                  zip(answers, records)), len(records)),
                         "no_answer": sum(a is None for a in answers),
                         "says_yes": sum(a is True for a in answers)}
    return summary


def evaluate_self_guided(cfg: StrategyQAPipelineConfig, model_path: Path, eval_drafts: Path,
                         out_dir: Path) -> dict:
    """Dev accuracy of the self-guided model with Phase B's drafts and with none."""
    from prefalign.models.load import load_model

    records = read_records(eval_drafts)
    ids = [r["qid"] for r in records]
    prompts = {"C_self_guided": [draft_prompt(r["question"], r["draft"]) for r in records],
               "C_self_guided_no_draft": [reasoning_prompt(r["question"]) for r in records]}
    lm, tokenizer = load_model(str(model_path), dtype=cfg.dtype)
    rows = {}
    for row, texts in prompts.items():
        replies = generate_to_file(lm, tokenizer, list(zip(ids, texts)),
                                   out_dir / f"{row}_replies.jsonl",
                                   max_new_tokens=cfg.eval.max_new_tokens,
                                   batch_size=cfg.eval.batch_size,
                                   use_chat_template=cfg.use_chat_template, label=f"eval {row}")
        answers = [read_yes_no(replies[i]) for i in ids]
        rows[row] = {**accuracy(sum(a == r["answer"] for a, r in zip(answers, records)),
                                len(records)),
                     "no_answer": sum(a is None for a in answers),
                     "says_yes": sum(a is True for a in answers),
                     "mean_words": sum(len(replies[i].split()) for i in ids) / max(len(ids), 1),
                     "agrees_with_draft": sum(a is not None and a == r["draft_answer"]
                                              for a, r in zip(answers, records))}
    return rows


def run_self_guided(cfg: StrategyQAPipelineConfig, root: Path, model_path: Path,
                    train_config: Callable[[], PreferenceConfig]) -> dict:
    """Redraft → rebuild pairs → one DPO epoch (``train_config()``, built once the pairs
    exist) → evaluate; ``self_guided/summary.json``."""
    from prefalign.pipeline.strategyqa.stages import has_progress
    from prefalign.stages.preference import run_preference

    out_dir = root / "self_guided"
    drafts = redraft(cfg, model_path, root / "data", out_dir / "drafts")
    stage_cfg = train_config()
    result = run_preference(stage_cfg, resume=has_progress(stage_cfg.run_dir))
    eval_path = stage_cfg.run_dir / "eval.json"
    summary = {"drafts": drafts, "steps": result.step,
               "pairs_eval": json.loads(eval_path.read_text()) if eval_path.is_file() else {},
               "rows": evaluate_self_guided(cfg, stage_cfg.run_dir / "final",
                                            root / "drafts" / "eval_drafts.jsonl", out_dir)}
    atomic_write_json(out_dir / "summary.json", summary)
    return {row: round(summary["rows"][row]["rate"], 4) for row in ROWS}
