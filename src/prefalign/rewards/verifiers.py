"""Verifier rewards: a completion is checked, not judged.

Each verifier reads the answer fields of the prompt's row (``required_fields``)
and scores a completion with a programmatic check; ``passed`` gives the strict
pass/fail used for pass rates (a verifier may give partial credit in its
reward, never in ``passed``).

* ``countdown`` — ``numbers``, ``target``: 1 for an ``<answer>`` expression that
  uses the given numbers (each at most once) and equals the target; else
  ``numbers_credit`` when it parses and uses only given numbers (each at most
  once) but misses the target; else ``format_credit`` when it at least parses;
  else 0 (``prefalign.envs.countdown``).
* ``minigrid`` — ``env_id``, ``seed``, ``step``: the state is rebuilt by
  replaying the expert on episode (env_id, seed) for ``step`` subgoals; the
  completion's first line is run there by the executor; 1 when it meets the
  execution contract, else ``format_credit`` when it parses, else 0.
* ``gsm8k`` — ``answer``: 1 when the completion's final answer (after its last
  ``####``, else its last number) equals the reference number.
* ``arithmetic`` — ``answer``: 1 when the first integer of the completion is
  the exact answer (``prefalign.tasks.arithmetic``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import re
from collections import Counter
from functools import lru_cache

import torch

from prefalign.data.gsm8k import answers_match
from prefalign.envs import countdown
from prefalign.errors import DataError
from prefalign.rewards.base import RewardFunction, check_rows, register_reward
from prefalign.tasks import arithmetic


_INTEGER = re.compile(r"\d+")


class Verifier(ABC):
    """Base of the verifier rewards: ``score`` one completion, ``passed`` = score ≥ 1."""

    name = "verifier"
    required_fields: tuple[str, ...] = ()
    bounded = True

    @abstractmethod
    def score(self, completion: str, row: dict) -> float:
        """The reward of one completion given its prompt's row."""

    def passed(self, prompts: list[str], completions: list[str],
               rows: list[dict]) -> list[bool]:
        """Strict pass/fail per completion (partial credit does not pass)."""
        return [value >= 1.0 for value in self(prompts, completions, rows).tolist()]

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor:
        check_rows(self, prompts, completions, rows)
        return torch.tensor([self.score(c, r) for c, r in zip(completions, rows)],
                            dtype=torch.float32)


def _check_credit(format_credit: float) -> None:
    if not 0.0 <= format_credit < 1.0:
        raise ValueError(f"format_credit must be in [0, 1), got {format_credit}")


class CountdownVerifier(Verifier):
    """Countdown: exact check of the ``<answer>`` expression (see the module docstring)."""

    required_fields = ("numbers", "target")

    def __init__(self, format_credit: float = 0.1, numbers_credit: float | None = None):
        numbers_credit = format_credit if numbers_credit is None else numbers_credit
        _check_credit(format_credit)
        _check_credit(numbers_credit)
        self.name = "countdown"
        self.format_credit, self.numbers_credit = format_credit, numbers_credit

    def score(self, completion: str, row: dict) -> float:
        numbers, target = [int(n) for n in row["numbers"]], int(row["target"])
        answer = countdown.extract_answer(completion)
        if answer is None:
            return 0.0
        result = countdown.verify(answer, numbers, target)
        if result.correct:
            return 1.0
        if not result.well_formed:
            return 0.0
        used = Counter(int(n) for n in _INTEGER.findall(answer))
        given = Counter(numbers)
        return self.numbers_credit if all(given[n] >= k for n, k in used.items()) \
            else self.format_credit


@lru_cache(maxsize=4096)
def _expert_states(env_id: str, seed: int):
    """The expert's decision states of one episode (``None`` when the expert fails)."""
    from prefalign.envs.minigrid.traces import expert_rollout

    return expert_rollout(env_id, seed)


class MiniGridVerifier(Verifier):
    """MiniGrid subgoals: executed in the row's state, judged by the execution contract."""

    required_fields = ("env_id", "seed", "step")

    def __init__(self, format_credit: float = 0.0):
        _check_credit(format_credit)
        self.name = "minigrid"
        self.format_credit = format_credit

    def score(self, completion: str, row: dict) -> float:
        from prefalign.envs.minigrid.executor import execute
        from prefalign.envs.minigrid.grammar import SubgoalParseError, parse_subgoal

        env_id, seed, step = str(row["env_id"]), int(row["seed"]), int(row["step"])
        states = _expert_states(env_id, seed)
        if states is None or not 0 <= step < len(states):
            raise DataError(f"minigrid verifier: episode ({env_id}, seed {seed}) has no expert "
                            f"state at step {step}", field="step")
        lines = completion.strip().splitlines()
        subgoal = lines[0].strip() if lines else ""
        if execute(states[step].episode.copy(), subgoal).success:
            return 1.0
        try:
            parse_subgoal(subgoal)
        except SubgoalParseError:
            return 0.0
        return self.format_credit


class GSM8KVerifier(Verifier):
    """GSM8K: the completion's final number against the reference answer."""

    required_fields = ("answer",)

    def __init__(self) -> None:
        self.name = "gsm8k"

    def score(self, completion: str, row: dict) -> float:
        return 1.0 if answers_match(completion, str(row["answer"])) else 0.0


class ArithmeticVerifier(Verifier):
    """Two-digit arithmetic: the first integer of the completion against ``answer``."""

    required_fields = ("answer",)

    def __init__(self) -> None:
        self.name = "arithmetic"

    def score(self, completion: str, row: dict) -> float:
        return 1.0 if arithmetic.verify(completion, int(row["answer"])) else 0.0


@register_reward("countdown")
def countdown_verifier(format_credit: float = 0.1,
                       numbers_credit: float | None = None) -> RewardFunction:
    """``CountdownVerifier(format_credit, numbers_credit)`` (``numbers_credit`` defaults to
    ``format_credit``: the plain Countdown reward)."""
    return CountdownVerifier(format_credit, numbers_credit)


@register_reward("minigrid")
def minigrid_verifier(format_credit: float = 0.0) -> RewardFunction:
    """``MiniGridVerifier(format_credit)``."""
    return MiniGridVerifier(format_credit)


@register_reward("gsm8k")
def gsm8k_verifier() -> RewardFunction:
    """``GSM8KVerifier()``."""
    return GSM8KVerifier()


@register_reward("arithmetic")
def arithmetic_verifier() -> RewardFunction:
    """``ArithmeticVerifier()``."""
    return ArithmeticVerifier()
