"""Dev accuracy of every phase and of the two ablations that test whether Phase C reads
its draft.

=============  ===============  ============================================
row            model            prompt
=============  ===============  ============================================
A              Phase A          question → yes/no
B              Phase B          question → reasoning (the drafts stage's replies)
C              Phase C          question + the Phase-B draft → reasoning
C, no draft    Phase C          question → reasoning (the draft removed)
C, shuffled    Phase C          question + another question's draft
=============  ===============  ============================================

Every reply is read by the yes/no verifier; a reply that commits to neither
counts as wrong. Accuracies carry 95% Wilson intervals and sit beside the
majority-class baseline. Phase C's accuracy is also split by whether the draft
was right, with how often C's answer agrees with its draft, and by the question's
first word, so a miss can be explained. With ``eval.question_judge`` a pairwise
judge compares Phase C's clarifying questions with Phase B's
(``question_quality``). Replies are kept
(``eval/<row>_replies.jsonl``) and generation resumes after a kill.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from prefalign.engine.rundir import atomic_write_json
from prefalign.pipeline.strategyqa.config import StrategyQAPipelineConfig
from prefalign.pipeline.strategyqa.drafts import accuracy, read_records
from prefalign.pipeline.strategyqa.generation import generate_to_file, read_replies
from prefalign.tasks.strategyqa import derangement, draft_prompt, read_yes_no
from prefalign.tasks.strategyqa.formats import answer_prompt, reasoning_prompt

ROWS = ("A", "B", "C", "C_no_draft", "C_shuffled")


def ablation_prompts(records: list[dict], seed: int) -> dict[str, list[str]]:
    """Phase C's three prompts per question: with its draft, without, with another's."""
    perm = derangement(len(records), seed)
    return {"C": [draft_prompt(r["question"], r["draft"]) for r in records],
            "C_no_draft": [reasoning_prompt(r["question"]) for r in records],
            "C_shuffled": [draft_prompt(r["question"], records[perm[i]]["draft"])
                           for i, r in enumerate(records)]}


def _first_word(question: str) -> str:
    return question.split()[0].lower() if question.split() else ""


def breakdown(records: list[dict], answers: list[bool | None]) -> dict:
    """Accuracy by the draft's correctness and by the question's first word; agreement
    of the answers with the drafts."""
    by_draft: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_word: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    agree = 0
    for record, answer in zip(records, answers):
        right = answer == record["answer"]
        key = "draft right" if record["draft_answer"] == record["answer"] else "draft wrong"
        by_draft[key][0] += right
        by_draft[key][1] += 1
        by_word[_first_word(record["question"])][0] += right
        by_word[_first_word(record["question"])][1] += 1
        agree += answer is not None and answer == record["draft_answer"]
    common = sorted(by_word.items(), key=lambda kv: -kv[1][1])[:6]
    return {"by_draft": {k: accuracy(*v) for k, v in sorted(by_draft.items())},
            "by_first_word": {k: accuracy(*v) for k, v in common},
            "agrees_with_draft": accuracy(agree, len(records))}


def _score(records: list[dict], replies: list[str]) -> dict:
    answers = [read_yes_no(text) for text in replies]
    return {**accuracy(sum(a == r["answer"] for a, r in zip(answers, records)), len(records)),
            "no_answer": sum(a is None for a in answers),
            "says_yes": sum(a is True for a in answers),
            "mean_words": sum(len(text.split()) for text in replies) / max(len(replies), 1),
            "answers": answers}


def run_evaluation(cfg: StrategyQAPipelineConfig, root: Path, models: dict[str, Path]) -> dict:
    """Accuracy of every row of ``ROWS`` on the evaluation questions; ``eval/summary.json``."""
    from prefalign.models.load import load_model

    out_dir = root / "eval"
    records = read_records(root / "drafts" / "eval_drafts.jsonl")
    ids = [r["qid"] for r in records]
    common = dict(batch_size=cfg.eval.batch_size, use_chat_template=cfg.use_chat_template)
    results = {"B": _score(records, [r["draft"] for r in records])}
    lm, tokenizer = load_model(str(models["answer"]), dtype=cfg.dtype)
    replies = generate_to_file(lm, tokenizer, list(zip(ids, (answer_prompt(r["question"])
                                                             for r in records))),
                               out_dir / "A_replies.jsonl", max_new_tokens=cfg.eval.answer_tokens,
                               label="eval A", **common)
    results["A"] = _score(records, [replies[i] for i in ids])
    lm, tokenizer = load_model(str(models["dpo"]), dtype=cfg.dtype)
    for row, prompts in ablation_prompts(records, cfg.seed).items():
        replies = generate_to_file(lm, tokenizer, list(zip(ids, prompts)),
                                   out_dir / f"{row}_replies.jsonl",
                                   max_new_tokens=cfg.eval.max_new_tokens,
                                   label=f"eval {row}", **common)
        results[row] = _score(records, [replies[i] for i in ids])
    summary = {"rows": {row: {k: v for k, v in results[row].items() if k != "answers"}
                        for row in ROWS},
               "breakdown": {row: breakdown(records, results[row]["answers"])
                             for row in ("C", "C_no_draft", "C_shuffled")},
               "questions": len(records)}
    if cfg.eval.question_judge:
        from prefalign.pipeline.strategyqa.question_quality import compare_questions

        replies = read_replies(out_dir / "C_replies.jsonl")
        summary["question_quality"] = compare_questions(
            cfg.eval.question_judge, [r["question"] for r in records],
            [replies[i] for i in ids], [r["draft"] for r in records])
    atomic_write_json(out_dir / "summary.json", summary)
    return {row: round(summary["rows"][row]["rate"], 4) for row in ROWS}
