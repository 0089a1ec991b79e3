"""Online RL on the shared Engine: GRPO, RLOO, PPO and iterative DPO.

``run.run_online(cfg)`` is the entry point. The pieces: ``prompts`` (prompt
sets and field checks), ``scoring`` (the composite reward), ``model`` (the
training forward), ``reference`` (π_ref), ``setup`` (what a run shares),
``rollout_algorithm`` (rollouts as Engine batches), and one module per
algorithm (``grpo``, ``ppo``, ``online_dpo``).
"""

from prefalign.stages.online.run import ALGORITHMS, run_online, validate_inputs

__all__ = ["ALGORITHMS", "run_online", "validate_inputs"]
