"""Verifier rewards: a completion is checked, not judged.

Every task with a verifier (``prefalign.tasks``) is a reward of the same name:
``countdown``, ``minigrid``, ``gsm8k``, ``arithmetic``, and any task registered
later. The reward's parameters are the verifier factory's (``countdown`` takes
``format_credit`` and ``numbers_credit``); ``required_fields`` are the record
fields the verifier reads; ``passed`` gives the strict pass/fail used for pass
rates (a verifier may give partial credit in its reward, never in ``passed``).
"""

from __future__ import annotations

import functools
import inspect

import torch

from prefalign.rewards.base import RewardFunction, check_rows, register_reward
from prefalign.tasks import Task, Verifier, on_register


class VerifierReward:
    """A task's verifier as a reward: ``score`` per completion, ``passed`` = score ≥ 1."""

    bounded = True

    def __init__(self, verifier: Verifier):
        self.verifier = verifier
        self.name = verifier.name
        self.required_fields = tuple(verifier.required_fields)

    def passed(self, prompts: list[str], completions: list[str],
               rows: list[dict]) -> list[bool]:
        """Strict pass/fail per completion (partial credit does not pass)."""
        return [value >= 1.0 for value in self(prompts, completions, rows).tolist()]

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor:
        check_rows(self, prompts, completions, rows)
        return torch.tensor([self.verifier.score(c, r) for c, r in zip(completions, rows)],
                            dtype=torch.float32)


def _register(task: Task) -> None:
    """Register ``task``'s verifier as the reward ``task.name``, with its parameters."""
    if task.verifier is None:
        return
    make = task.verifier

    @functools.wraps(make)
    def factory(*args, **params) -> RewardFunction:
        return VerifierReward(make(*args, **params))

    factory.__signature__ = inspect.signature(make).replace(return_annotation=VerifierReward)
    register_reward(task.name)(factory)


on_register(_register)
