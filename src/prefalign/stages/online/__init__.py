"""Online RL on the shared Engine: a registry of algorithms (GRPO, RLOO, PPO,
REINFORCE++, iterative DPO, and any registered elsewhere).

``run.run_online(cfg)`` is the entry point; ``registry`` declares the algorithms
(``register_online_algorithm``, ``load_online_config``). The pieces: ``prompts``
(prompt sets and field checks), ``scoring`` (the composite reward), ``model``
(the training forward), ``reference`` (π_ref), ``setup`` (what a run shares),
``rollouts`` (what an algorithm's functions see), ``rollout_algorithm`` (rollouts
as Engine batches), and one module per built-in algorithm in ``algorithms/``.
"""

from prefalign.stages.online.registry import (
    OnlineAlgorithm,
    config_model,
    get_online_algorithm,
    load_online_config,
    online_algorithms,
    register_online_algorithm,
)
from prefalign.stages.online.run import run_online, validate_inputs

__all__ = ["OnlineAlgorithm", "config_model", "get_online_algorithm", "load_online_config",
           "online_algorithms", "register_online_algorithm", "run_online", "validate_inputs"]
