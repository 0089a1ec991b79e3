"""What the MiniGrid pipeline's stages hand to one another: named outputs at fixed
places in the run directory, each produced by exactly one stage."""

from __future__ import annotations

from prefalign.pipeline.base import Artifact

DATA_FILES = {"sft_train": "sft_train.jsonl", "sft_validation": "sft_validation.jsonl",
              "pairs_train": "pairs_train.jsonl", "pairs_validation": "pairs_validation.jsonl"}
HELD_OUT_CONTEXTS = "held_out_contexts.json"

ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("sft_data", f"data/{DATA_FILES['sft_train']}", "data", "SFT training records"),
    Artifact("sft_validation", f"data/{DATA_FILES['sft_validation']}", "data",
             "SFT validation records"),
    Artifact("pairs", f"data/{DATA_FILES['pairs_train']}", "data", "training preference pairs"),
    Artifact("pairs_validation", f"data/{DATA_FILES['pairs_validation']}", "data",
             "validation preference pairs"),
    Artifact("data_summary", "data/summary.json", "data", "data summary"),
    Artifact("held_out_contexts", f"data/{HELD_OUT_CONTEXTS}", "data",
             "every validation and test state, refused in training"),
    Artifact("sft_model", "sft/final", "sft", "the SFT adapter"),
    Artifact("policy_pairs", "onpolicy/pairs_train.jsonl", "onpolicy",
             "DPO and reward-model pairs: on-policy and/or perturbation"),
    Artifact("onpolicy_summary", "onpolicy/summary.json", "onpolicy",
             "what the SFT policy's practice against the executor gave"),
    Artifact("dpo_model", "dpo/final", "dpo", "the DPO adapter"),
    Artifact("rl_model", "rl/final", "rl", "the multi-turn GRPO adapter"),
    Artifact("reward_model", "rm/final", "rm", "the reward model"),
    Artifact("perturbation_reward_model", "rm-perturbation/final", "rm",
             "the reward model of perturbation pairs alone (the hacking baseline)"),
    Artifact("evaluation", "eval/summary.json", "eval", "the evaluation results"),
    Artifact("report", "report.md", "report", "the report"),
)}

# Which policy needs which trained model.
POLICY_INPUTS: dict[str, tuple[str, ...]] = {
    "base": (), "sft": ("sft_model",), "dpo": ("dpo_model",),
    "dpo_best_of_n": ("dpo_model", "reward_model", "perturbation_reward_model"),
    "rl": ("rl_model",),
}
