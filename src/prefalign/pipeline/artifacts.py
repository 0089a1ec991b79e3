"""What the pipeline's stages hand to one another: named outputs at fixed places
in the run directory, each produced by exactly one stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefalign.pipeline.minigrid_data import DATA_FILES


@dataclass(frozen=True)
class Artifact:
    """One stage output: its path relative to the run directory and its producer."""

    name: str
    path: str
    stage: str
    description: str

    def location(self, root: Path) -> Path:
        return root / self.path

    def exists(self, root: Path) -> bool:
        """A file, or a non-empty folder (a saved model) at its place."""
        where = self.location(root)
        return where.is_file() or (where.is_dir() and any(where.iterdir()))


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

# Folders and files each stage owns: removed before the stage runs again from scratch.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": ("data",), "sft": ("sft",), "dpo": ("dpo",), "rm": ("rm",), "eval": ("eval",),
    "report": ("report.md", "figures"),
}

# Which policy needs which trained model.
POLICY_INPUTS: dict[str, tuple[str, ...]] = {
    "base": (), "sft": ("sft_model",), "dpo": ("dpo_model",),
    "dpo_best_of_n": ("dpo_model", "reward_model"),
}
