"""Config of the KTO stage (unpaired desirable / undesirable completions)."""

from __future__ import annotations

from pydantic import Field

from prefalign.config.base import StrictModel
from prefalign.config.preference import ReferenceConfig
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig


class KTOLossConfig(StrictModel):
    """Parameters of the KTO loss (Ethayarajh et al. 2024)."""

    beta: float = Field(0.1, gt=0, description="β, the strength of the KL anchor.")
    desirable_weight: float = Field(1.0, gt=0, description="w_D, weight of desirable examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="w_U, weight of undesirable "
                                      "examples.")


class KTOConfig(RunConfig):
    """KTO on {prompt, completion, label} rows; preference pairs are split into two rows."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: KTOLossConfig = Field(default_factory=KTOLossConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    from_pairs: bool = Field(False, description="Read preference pairs and use chosen as "
                             "desirable, rejected as undesirable.")
