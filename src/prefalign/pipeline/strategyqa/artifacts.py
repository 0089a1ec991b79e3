"""What the StrategyQA pipeline's stages hand to one another: named outputs at fixed places
in the run directory, each produced by exactly one stage."""

from __future__ import annotations

from prefalign.pipeline.base import Artifact

ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("answer_train", "data/answer_train.jsonl", "data", "Phase A training records"),
    Artifact("answer_validation", "data/answer_validation.jsonl", "data",
             "Phase A validation records"),
    Artifact("reasoning_train", "data/reasoning_train.jsonl", "data",
             "Phase B training records"),
    Artifact("reasoning_validation", "data/reasoning_validation.jsonl", "data",
             "Phase B validation records"),
    Artifact("validation_questions", "data/validation_questions.jsonl", "data",
             "the validation questions (held out of every phase)"),
    Artifact("draft_questions", "data/draft_questions.jsonl", "data",
             "the questions drafted on for Phase C's pairs"),
    Artifact("eval_questions", "data/eval_questions.jsonl", "data", "the evaluation questions"),
    Artifact("data_summary", "data/summary.json", "data", "data summary"),
    Artifact("answer_model", "answer_sft/final", "answer_sft", "the Phase-A adapter"),
    Artifact("reasoning_model", "reasoning_sft/final", "reasoning_sft", "the Phase-B adapter"),
    Artifact("pairs", "drafts/pairs_train.jsonl", "drafts", "Phase C training pairs"),
    Artifact("pairs_validation", "drafts/pairs_validation.jsonl", "drafts",
             "Phase C validation pairs"),
    Artifact("eval_drafts", "drafts/eval_drafts.jsonl", "drafts",
             "the Phase-B model's drafts on the evaluation questions"),
    Artifact("drafts_summary", "drafts/summary.json", "drafts", "the drafts' accuracy"),
    Artifact("dpo_model", "dpo/final", "dpo", "the Phase-C adapter"),
    Artifact("evaluation", "eval/summary.json", "eval", "dev accuracies"),
    Artifact("attribution", "attribution/summary.json", "attribution",
             "attribution mass on the draft"),
    Artifact("self_guided_pairs", "self_guided/drafts/pairs_train.jsonl", "self_guided",
             "pairs rebuilt from the Phase-C model's drafts"),
    Artifact("self_guided_pairs_validation", "self_guided/drafts/pairs_validation.jsonl",
             "self_guided", "validation pairs rebuilt from the Phase-C model's drafts"),
    Artifact("self_guided_model", "self_guided/final", "self_guided",
             "the adapter after the self-guided epoch"),
    Artifact("self_guided_summary", "self_guided/summary.json", "self_guided",
             "the self-guided loop's drafts and dev accuracy"),
    Artifact("report", "report.md", "report", "the report"),
)}
