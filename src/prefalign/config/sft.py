"""Config of the SFT stage."""

from __future__ import annotations

from pydantic import Field

from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig


class SFTConfig(RunConfig):
    """Supervised fine-tuning: loss on completion tokens only."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    packing: bool = Field(False, description="Pack several examples per row (padding-free).")
    from_pairs: bool = Field(False, description="Read preference pairs and train on the chosen "
                             "reply of each (SFT on preferred responses).")
