"""Composite rewards: a weighted sum of named reward functions.

``R(x, y) = Σ_i w_i · s_i(r_i(x, y))`` where ``r_i`` is a registered reward
(``base.build_reward``), ``w_i`` its weight and ``s_i`` either the identity or
the logistic ``σ``. Unbounded rewards (reward-model scores, whose scale is
arbitrary) are squashed by ``σ`` by default so that a weight means the same
thing for every component; bounded ones (gates, detectors, verifiers) are used
as they are. A component spec is::

    {"name": "rm", "weight": 1.0, "params": {"path": "runs/rm/final"},
     "label": "helpful", "squash": true}

where ``label`` (default: the name, numbered when repeated) names it in
reports and ``squash`` overrides the default.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefalign.errors import ConfigError, PrefalignError, RewardError
from prefalign.rewards.base import RewardFunction, build_reward, check_rows

SPEC_KEYS = ("name", "weight", "params", "label", "squash")


def is_bounded(reward: RewardFunction) -> bool:
    """False for rewards that declare ``bounded = False`` (reward-model scores)."""
    return bool(getattr(reward, "bounded", True))


@dataclass
class Component:
    """One term ``w · s(r)`` of a composite."""

    label: str
    weight: float
    reward: RewardFunction
    squash: bool

    def values(self, prompts: list[str], completions: list[str],
               rows: list[dict]) -> torch.Tensor:
        """``s(r)``, shape ``[N]`` float32 (before the weight). A reward that raises, or
        scores a completion NaN or infinite, is a ``RewardError`` naming it (the run
        stops there, its last checkpoint intact)."""
        try:
            values = self.reward(prompts, completions, rows)
        except PrefalignError:
            raise
        except Exception as error:  # a user's reward function: any failure is reported
            detail = " ".join(str(error).split())[:200]
            raise RewardError(f"reward '{self.label}' raised {type(error).__name__}: "
                              f"{detail}") from error
        values = torch.as_tensor(values).to(torch.float32)
        bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
        if bad:
            raise RewardError(f"reward '{self.label}' scored {len(bad)} of {len(values)} "
                              f"completions NaN or infinite (first: completion {bad[0]})")
        return torch.sigmoid(values) if self.squash else values


class CompositeReward:
    """``Σ_i w_i · s_i(r_i)`` over its components; ``components`` reports each ``s_i(r_i)``."""

    bounded = True

    def __init__(self, parts: Sequence[Component]):
        if not parts:
            raise ConfigError("a composite reward needs at least one component")
        self.parts = list(parts)
        self.name = "composite"
        self.bounded = all(part.squash or is_bounded(part.reward) for part in self.parts)
        fields: list[str] = []
        for part in self.parts:
            fields.extend(f for f in part.reward.required_fields if f not in fields)
        self.required_fields = tuple(fields)

    @property
    def weights(self) -> dict[str, float]:
        return {part.label: part.weight for part in self.parts}

    def components(self, prompts: list[str], completions: list[str],
                   rows: list[dict]) -> dict[str, torch.Tensor]:
        """Each component's value ``s_i(r_i)`` (unweighted), ``{label: Tensor[N]}``."""
        check_rows(self, prompts, completions, rows)
        return {part.label: part.values(prompts, completions, rows) for part in self.parts}

    def combine(self, components: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``Σ_i w_i · components[label_i]``, shape ``[N]``."""
        total = None
        for part in self.parts:
            term = part.weight * components[part.label]
            total = term if total is None else total + term
        return total

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor:
        return self.combine(self.components(prompts, completions, rows))


def _parse_spec(spec: Any, position: int) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"composite component {position}: expected a mapping with "
                          f"'name' and 'weight', got {spec!r}")
    unknown = [key for key in spec if key not in SPEC_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), SPEC_KEYS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(SPEC_KEYS)}"
        raise ConfigError(f"composite component {position}: unknown key '{unknown[0]}'{hint}")
    if "name" not in spec:
        raise ConfigError(f"composite component {position}: missing 'name'")
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ConfigError(f"composite component {position} ({spec['name']}): weight must be "
                          f"a number, got {weight!r}")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"composite component {position} ({spec['name']}): params must be "
                          f"a mapping, got {params!r}")
    squash = spec.get("squash")
    if squash is not None and not isinstance(squash, bool):
        raise ConfigError(f"composite component {position} ({spec['name']}): squash must be "
                          f"true or false, got {squash!r}")
    return {"name": str(spec["name"]), "weight": float(weight), "params": dict(params),
            "label": spec.get("label"), "squash": squash}


def build_composite(specs: Sequence[Mapping[str, Any]]) -> CompositeReward:
    """A ``CompositeReward`` from component specs (see the module docstring).

    Bad specs (unknown keys, a non-numeric weight, an unknown reward or
    parameter, a repeated label) are ``ConfigError``s.
    """
    if isinstance(specs, Mapping | str | bytes):
        raise ConfigError("a composite reward is a list of components, each "
                          "{name, weight, params}")
    parts: list[Component] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(specs):
        spec = _parse_spec(raw, position)
        reward = build_reward(spec["name"], **spec["params"])
        label = spec["label"]
        if label is None:
            count = seen.get(spec["name"], 0)
            label = spec["name"] if count == 0 else f"{spec['name']}_{count}"
        seen[spec["name"]] = seen.get(spec["name"], 0) + 1
        if any(part.label == label for part in parts):
            raise ConfigError(f"composite: two components share the label '{label}'; "
                              f"give one a different 'label'")
        squash = spec["squash"] if spec["squash"] is not None else not is_bounded(reward)
        parts.append(Component(label=str(label), weight=spec["weight"], reward=reward,
                               squash=squash))
    return CompositeReward(parts)


def load_composite_spec(path: str | Path) -> list[dict[str, Any]]:
    """Component specs from a YAML file: a list of components, or a mapping whose
    ``components`` (or ``rewards``) key holds the list."""
    import yaml

    from prefalign.config.base import yaml_error_text

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reward config not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}{yaml_error_text(err)}") from None
    if isinstance(loaded, Mapping):
        unknown = [key for key in loaded if key not in ("components", "rewards")]
        if unknown or len(loaded) != 1:
            raise ConfigError(f"{path}: expected a list of components, or one key "
                              f"'components' holding it; got keys {', '.join(map(str, loaded))}")
        loaded = next(iter(loaded.values()))
    if not isinstance(loaded, list):
        raise ConfigError(f"{path}: expected a list of reward components "
                          f"({{name, weight, params}})")
    return loaded


def component_summary(composite: CompositeReward, components: Mapping[str, torch.Tensor],
                      total: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per component: weight, squash, mean/std/min/max of ``s_i(r_i)``, the mean weighted
    contribution ``w_i·mean``, and the Pearson correlation with the total; plus ``total``."""
    def stats(values: torch.Tensor) -> dict[str, float]:
        values = values.double()
        return {"mean": float(values.mean()), "std": float(values.std(correction=0)),
                "min": float(values.min()), "max": float(values.max())}

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        da, db = a.double() - a.double().mean(), b.double() - b.double().mean()
        scale = float((da * da).sum().sqrt() * (db * db).sum().sqrt())
        return float((da * db).sum()) / scale if scale > 0 else math.nan

    summary = {}
    for part in composite.parts:
        values = components[part.label]
        summary[part.label] = {"reward": part.reward.name, "weight": part.weight,
                               "squash": part.squash, **stats(values),
                               "weighted_mean": part.weight * float(values.double().mean()),
                               "corr_with_total": correlation(values, total)}
    summary["total"] = stats(total)
    return summary
