"""The built-in online algorithms, one module each; importing this package registers
them (``prefalign.stages.online.registry`` does, on first lookup). A new built-in
algorithm is a module here plus its line below; an algorithm defined elsewhere
calls ``register_online_algorithm`` itself."""

from prefalign.stages.online.algorithms import agent_rl, grpo, online_dpo, ppo, reinforce_pp, rloo

__all__ = ["agent_rl", "grpo", "online_dpo", "ppo", "reinforce_pp", "rloo"]
