"""MiniGrid and BabyAI as a verifiable subgoal domain.

A language model reads a textual state (``describe_state``/``build_prompt``)
and proposes one symbolic subgoal (``grammar``); the executor plans and runs
it in the real environment and judges it against a written contract
(``execute``). A state-based expert gives the canonical subgoal, from which
come supervised traces, perturbed preference pairs, and the reference for
evaluation (``evaluate_policy``).
"""

from prefalign.envs.minigrid.context import INSTRUCTION, build_prompt, describe_state
from prefalign.envs.minigrid.episodes import (
                                              ENVIRONMENTS,
                                              Episode,
                                              UnknownEnvironmentError,
                                              make_episode,
                                              world_objects,
)
from prefalign.envs.minigrid.executor import ExecutionResult, FailureType, execute
from prefalign.envs.minigrid.expert import NoExpertSubgoal, expert_plan, expert_subgoal
from prefalign.envs.minigrid.grammar import (
                                              Subgoal,
                                              SubgoalParseError,
                                              format_subgoal,
                                              parse_subgoal,
)
from prefalign.envs.minigrid.metrics import evaluate_policy, proportion, wilson_interval
from prefalign.envs.minigrid.perturb import PERTURBATION_TYPES, Decision, preference_pairs
from prefalign.envs.minigrid.traces import (
                                              SeedSplits,
                                              SplitLeakageError,
                                              check_split_leakage,
                                              context_overlap,
                                              expert_rollout,
                                              generate_traces,
                                              sft_records,
                                              split_seeds,
)

__all__ = [
    "ENVIRONMENTS", "INSTRUCTION", "PERTURBATION_TYPES", "Decision", "Episode",
    "ExecutionResult", "FailureType", "NoExpertSubgoal", "SeedSplits", "SplitLeakageError",
    "Subgoal", "SubgoalParseError", "UnknownEnvironmentError", "build_prompt",
    "check_split_leakage", "context_overlap", "describe_state", "evaluate_policy", "execute",
    "expert_plan",    "expert_rollout", "expert_subgoal", "format_subgoal", "generate_traces", "make_episode",
    "parse_subgoal", "preference_pairs", "proportion", "sft_records", "split_seeds",
    "wilson_interval", "world_objects",
]
