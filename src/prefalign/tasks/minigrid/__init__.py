"""MiniGrid and BabyAI as a verifiable subgoal domain.

A language model reads a textual state (``describe_state``/``build_prompt``)
and proposes one symbolic subgoal (``grammar``); the executor plans and runs
it in the real environment and judges it against a written contract
(``execute``). A state-based expert gives the canonical subgoal, from which
come supervised traces, perturbed preference pairs, and the reference for
evaluation (``evaluate_policy``). ``task`` registers the task.

The names below are loaded from their modules on first use, so registering the
task does not import gymnasium.
"""

import importlib

from prefalign.tasks.minigrid.task import TASK

_EXPORTS = {
    "context": ("INSTRUCTION", "build_prompt", "describe_state"),
    "episodes": ("ENVIRONMENTS", "Episode", "UnknownEnvironmentError", "make_episode",
                 "world_objects"),
    "executor": ("ExecutionResult", "FailureType", "execute"),
    "expert": ("NoExpertSubgoal", "expert_plan", "expert_subgoal"),
    "grammar": ("Subgoal", "SubgoalParseError", "format_subgoal", "parse_subgoal"),
    "metrics": ("evaluate_policy", "proportion"),
    "perturb": ("PERTURBATION_TYPES", "Decision", "preference_pairs"),
    "traces": ("SeedSplits", "SplitLeakageError", "check_split_leakage", "context_overlap",
               "expert_rollout", "generate_traces", "sft_records", "split_seeds"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["TASK", *sorted(_HOME)]


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
