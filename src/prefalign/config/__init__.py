"""Typed stage configs and the YAML/override loader (see ``base.py``)."""

from prefalign.config.base import (
                                   ConfigT,
                                   StrictModel,
                                   config_to_yaml,
                                   deep_merge,
                                   describe_validation_error,
                                   load_config,
                                   parse_overrides,
)
from prefalign.config.kto import KTOConfig, KTOLossConfig
from prefalign.config.online import OnlineConfig
from prefalign.config.pipeline import PipelineConfig
from prefalign.config.preference import LossConfig, PhaseConfig, PreferenceConfig, ReferenceConfig
from prefalign.config.reward import EnsembleConfig, RewardConfig, RewardLossConfig
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig
from prefalign.config.sft import SFTConfig

__all__ = [
                                   "ConfigT",
                                   "DataConfig",
                                   "EnsembleConfig",
                                   "KTOConfig",
                                   "KTOLossConfig",
                                   "LossConfig",
                                   "ModelConfig",
                                   "OnlineConfig",
                                   "PhaseConfig",
                                   "PipelineConfig",
                                   "PreferenceConfig",
                                   "ReferenceConfig",
                                   "RewardConfig",
                                   "RewardLossConfig",
                                   "RunConfig",
                                   "SFTConfig",
                                   "StrictModel",
                                   "TrainConfig",
                                   "config_to_yaml",
                                   "deep_merge",
                                   "describe_validation_error",
                                   "load_config",
                                   "parse_overrides",
]
