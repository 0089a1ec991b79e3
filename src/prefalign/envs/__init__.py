"""Verifiable task domains: MiniGrid/BabyAI subgoals (``prefalign.envs.minigrid``)
and Countdown arithmetic (``prefalign.envs.countdown``)."""
