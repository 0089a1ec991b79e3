"""The reward-function interface and the registry every reward registers into.

A reward function scores completions of prompts: ``fn(prompts, completions, rows)``
returns a float32 tensor ``[N]``, one value per completion. ``rows`` are the
data records the prompts came from (a verifier reads its answer fields there);
``required_fields`` names the fields a function needs in each row.

Rewards are built by name from a registry of factories, so a config can say
``{"name": "length_gate", "params": {"max_words": 200}}``::

    @register_reward("length_gate")
    def length_gate(max_words: int = 200) -> RewardFunction: ...

    reward = build_reward("length_gate", max_words=120)

Every module of ``prefalign.rewards`` is imported before a lookup, so a reward
defined in a new module of this package registers itself without further edits.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from prefalign.discovery import import_submodules
from prefalign.errors import ConfigError, DataError


@runtime_checkable
class RewardFunction(Protocol):
    """Scores completions: ``__call__(prompts, completions, rows) -> Tensor[N]`` (float32).

    ``name`` identifies the reward in reports; ``required_fields`` are the row
    fields it reads (empty when it needs only the text). An optional attribute
    ``bounded`` (default True) says whether values lie in a fixed range; a
    composite squashes unbounded ones (reward-model scores) through ``σ``.
    """

    name: str
    required_fields: tuple[str, ...]

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor: ...


RewardFactory = Callable[..., RewardFunction]
REWARDS: dict[str, RewardFactory] = {}
_PACKAGE = "prefalign.rewards"


def register_reward(name: str) -> Callable[[RewardFactory], RewardFactory]:
    """Decorator adding a factory ``(**params) -> RewardFunction`` to ``REWARDS``.

    Registering a second, different factory under a taken name is a programming
    error and raises ``ValueError``.
    """
    def decorate(factory: RewardFactory) -> RewardFactory:
        existing = REWARDS.get(name)
        if existing is not None and existing is not factory:
            same_origin = (getattr(existing, "__module__", None), existing.__qualname__) == (
                getattr(factory, "__module__", None), factory.__qualname__)
            if not same_origin:
                raise ValueError(f"reward '{name}' is already registered by "
                                 f"{existing.__module__}.{existing.__qualname__}")
        REWARDS[name] = factory
        return factory
    return decorate


def discover_rewards() -> None:
    """Import every module of ``prefalign.rewards`` once, so their rewards register."""
    import_submodules(_PACKAGE)


def available_rewards() -> list[str]:
    """Sorted names of every registered reward."""
    discover_rewards()
    return sorted(REWARDS)


def _check_params(name: str, factory: RewardFactory, params: dict[str, Any]) -> None:
    signature = inspect.signature(factory)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                      for p in signature.parameters.values())
    valid = [p.name for p in signature.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           inspect.Parameter.KEYWORD_ONLY)]
    if not accepts_any:
        unknown = [key for key in params if key not in valid]
        if unknown:
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"reward '{name}' has no parameter '{unknown[0]}'{hint} "
                              f"(valid: {', '.join(valid) or 'none'})")
    missing = [p.name for p in signature.parameters.values()
               if p.default is inspect.Parameter.empty and p.name in valid
               and p.name not in params]
    if missing:
        raise ConfigError(f"reward '{name}' needs parameter(s): {', '.join(missing)}")


def build_reward(name: str, **params: Any) -> RewardFunction:
    """The reward registered as ``name``, built with ``params``.

    An unknown name is a ``ConfigError`` listing the valid names; an unknown or
    missing parameter is a ``ConfigError`` naming it.
    """
    discover_rewards()
    factory = REWARDS.get(name)
    if factory is None:
        close = difflib.get_close_matches(name, list(REWARDS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown reward '{name}'; {hint}valid rewards: "
                          f"{', '.join(sorted(REWARDS))}")
    _check_params(name, factory, params)
    try:
        return factory(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"reward '{name}': {err}") from None


def check_rows(reward: RewardFunction, prompts: Sequence[str], completions: Sequence[str],
               rows: Sequence[dict]) -> None:
    """Refuse mismatched lengths and rows that lack a field ``reward`` requires."""
    if not (len(prompts) == len(completions) == len(rows)):
        raise DataError(f"reward '{reward.name}': {len(prompts)} prompts, "
                        f"{len(completions)} completions and {len(rows)} rows must match")
    for index, row in enumerate(rows):
        for field in reward.required_fields:
            if field not in row:
                raise DataError(f"reward '{reward.name}' needs field '{field}' in every row; "
                                f"row {index} has only {', '.join(sorted(row)) or 'no fields'}",
                                field=field)
