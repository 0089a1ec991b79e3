"""The stage commands a sweep can run, and a check of one job's config before it runs.

A stage is an offline training command (``sft``, ``dpo``, ``kto``, ``rm``) or a
registered online algorithm (``grpo``, ``rloo``, ``ppo``, ``online-dpo``, ...). The
check loads the config exactly as the command will (YAML file, then ``key=value``
overrides, then the online algorithm's cross-field rules), so a misspelt key or a
bad value stops the sweep before any cell runs.
"""

from __future__ import annotations

from pydantic import BaseModel

from prefalign.config import KTOConfig, PreferenceConfig, RewardConfig, SFTConfig, load_config
from prefalign.stages.online.registry import load_online_config, online_algorithms

OFFLINE_STAGES: dict[str, type[BaseModel]] = {
    "sft": SFTConfig, "dpo": PreferenceConfig, "kto": KTOConfig, "rm": RewardConfig,
}


def stage_names() -> list[str]:
    """Every stage command a sweep can run: the offline ones, then the online ones."""
    return [*OFFLINE_STAGES, *online_algorithms()]


def check_stage_config(stage: str, config: str | None, overrides: list[str]) -> None:
    """Load ``stage``'s config from ``config`` and ``overrides``; ``ConfigError`` if bad."""
    if stage in OFFLINE_STAGES:
        load_config(OFFLINE_STAGES[stage], config, overrides)
    else:
        load_online_config(stage, config, overrides)
