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
from prefalign.config.preference import LossConfig, PhaseConfig, PreferenceConfig, ReferenceConfig
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig
from prefalign.config.sft import SFTConfig

__all__ = [
                                   "ConfigT",
                                   "DataConfig",
                                   "LossConfig",
                                   "ModelConfig",
                                   "PhaseConfig",
                                   "PreferenceConfig",
                                   "ReferenceConfig",
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
