"""What the MiniGrid pipeline's stages hand to one another: named outputs at fixed
places in the run directory, each produced by exactly one stage."""

from __future__ import annotations

from prefalign.pipeline.base import Artifact

DATA_FILES = {"sft_train": "sft_train.jsonl", "sft_validation": "sft_validation.jsonl",
              "pairs_train": "pairs_train.jsonl", "pairs_validation": "pairs_validation.jsonl"}

ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("sft_data", f"data/{DATA_FILES['sft_train']}", "data", "SFT training records"),
    Artifact("sft_validation", f"data/{DATA_FILES['sft_validation']}", "data",
             "SFT validation records"),
    Artifact("pairs", f"data/{DATA_FILES['pairs_train']}", "data", "training preference pairs"),
    Artifact("pairs_validation", f"data/{DATA_FILES['pairs_validation']}", "data",
             "validation preference pairs"),
    Artifact("data_summary", "data/summary.json", "data", "data summary"),
    Artifact("sft_model", "sft/final", "sft", "the SFT adapter"),
    Artifact("dpo_model", "dpo/final", "dpo", "the DPO adapter"),
    Artifact("reward_model", "rm/final", "rm", "the reward model"),
    Artifact("evaluation", "eval/summary.json", "eval", "the evaluation results"),
    Artifact("report", "report.md", "report", "the report"),
)}

# Which policy needs which trained model.
POLICY_INPUTS: dict[str, tuple[str, ...]] = {
    "base": (), "sft": ("sft_model",), "dpo": ("dpo_model",),
    "dpo_best_of_n": ("dpo_model", "reward_model"),
}
