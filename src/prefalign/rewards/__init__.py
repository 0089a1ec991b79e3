"""Reward functions: reward models (single and ensembles), programmatic checks,
verifiers and weighted composites, all behind one interface and one registry
(``base.py``): ``build_reward(name, **params)(prompts, completions, rows) -> Tensor[N]``.
"""

from prefalign.rewards.base import (
    REWARDS,
    RewardFunction,
    available_rewards,
    build_reward,
    check_rows,
    register_reward,
)
from prefalign.rewards.composite import CompositeReward, build_composite, load_composite_spec
from prefalign.rewards.ensemble import EnsembleScores, ensemble_scores
from prefalign.rewards.model import RewardModel
from prefalign.rewards.programmatic import HollowOpener, LengthGate, count_hollow_openers

__all__ = [
    "REWARDS",
    "CompositeReward",
    "EnsembleScores",
    "HollowOpener",
    "LengthGate",
    "RewardFunction",
    "RewardModel",
    "available_rewards",
    "build_composite",
    "build_reward",
    "check_rows",
    "count_hollow_openers",
    "ensemble_scores",
    "load_composite_spec",
    "register_reward",
]
