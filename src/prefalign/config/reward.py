"""Config of the reward-model stage (``prefalign rm``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prefalign.config.base import StrictModel
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig


class RewardLossConfig(StrictModel):
    """The pairwise Bradley-Terry loss ``−log σ(r_c − r_r − m) + c·(r_c + r_r)²``."""

    use_margin: bool = Field(True, description="Subtract each pair's 'margin' field m (when "
                             "every pair has one) inside the sigmoid.")
    center_coef: float = Field(0.0, ge=0, description="Centring coefficient c; 0.01 keeps "
                               "rewards near zero mean.")


class EnsembleConfig(StrictModel):
    """K members that differ in seed (head initialisation, LoRA initialisation, data order)."""

    k: int = Field(1, ge=1, description="Number of members; member i trains with seed "
                   "train.seed + i.")
    penalty: float = Field(1.0, ge=0, description="λ in the penalised reward mean − λ·std "
                           "used when the ensemble scores.")


class RewardConfig(RunConfig):
    """Reward model: a scalar head on the last non-padding token of a causal LM backbone."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    tuning: Literal["lora", "full", "frozen"] = Field(
        "lora", description="'lora': train LoRA adapters (model.lora) and the head; 'full': "
        "train every weight; 'frozen': train only the linear head on backbone features "
        "computed once (model.lora is used only with 'lora').")
    objective: Literal["pairwise", "regression", "process", "outcome"] = Field(
        "pairwise", description="'pairwise': Bradley-Terry on {prompt, chosen, rejected}; "
        "'regression': MSE on normalised scores of {prompt, response, score}; 'process' "
        "(PRM): per-step BCE on {prompt, steps, labels}, the head read at every step's last "
        "token; 'outcome' (ORM): the same model trained on final_correct at the last step.")
    aggregation: Literal["min", "mean", "product", "last"] = Field(
        "min", description="process/outcome: how step scores become a solution's score.")
    loss: RewardLossConfig = Field(default_factory=RewardLossConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    feature_batch_size: int = Field(16, gt=0, description="Sequences per no-grad forward "
                                    "pass when computing features (frozen) or scoring.")
    prefix_sharing: bool = Field(True, description="lora/full pairwise training: one row "
                                 "[prompt | chosen | rejected] per pair with a mask that keeps "
                                 "chosen and rejected apart, so the prompt is computed once "
                                 "(exact; needs sdpa or eager attention, otherwise off).")
    cache_features: bool = Field(True, description="tuning=frozen: keep backbone features on "
                                 "disk, keyed by weights and token ids, for later runs.")
