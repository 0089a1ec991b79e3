"""Scoring completions with the configured reward: totals, components, pass/fail.

The reward of a run is a composite ``Σ_i w_i·s_i(r_i)`` of registered reward
functions (``prefalign.rewards.build_composite``); each term is also reported
on its own. Verifier terms (those with ``passed``; a score of 1 passes) give the strict
pass rate;
a reward-model ensemble (``member_scores`` with ``model.num_members > 1``) gives
the members' disagreement per completion, the standard deviation of their
scores (the members are scored a second time for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefalign.config.online import RewardSpec
from prefalign.rewards import build_composite
from prefalign.rewards.composite import CompositeReward


def prompt_text(prompt: str | list[dict]) -> str:
    """A prompt as the text rewards read: the string itself, the single user message of a
    (system +) user prompt, or the turns as ``role: content`` lines."""
    if isinstance(prompt, str):
        return prompt
    turns = [m for m in prompt if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in turns)


def ensemble_size(reward) -> int:
    """Members of a reward-model ensemble behind ``reward`` (1 for anything else)."""
    if not callable(getattr(reward, "member_scores", None)):
        return 1
    return int(getattr(getattr(reward, "model", None), "num_members", 1))


@dataclass
class Scores:
    """Scores of N completions: ``total`` ``[N]``, each term ``[N]``, verifier verdicts
    (``None`` without a verifier) and ensemble disagreement ``[N]`` (``None`` without one)."""

    total: torch.Tensor
    components: dict[str, torch.Tensor]
    passed: list[bool] | None
    disagreement: torch.Tensor | None


class RewardScorer:
    """The composite reward of ``specs``, with the extras of ``Scores``."""

    def __init__(self, specs: list[RewardSpec]):
        self.reward: CompositeReward = build_composite([spec.spec() for spec in specs])

    @property
    def required_fields(self) -> tuple[str, ...]:
        return self.reward.required_fields

    def score(self, prompts: list, completions: list[str], rows: list[dict]) -> Scores:
        texts = [prompt_text(p) for p in prompts]
        components = self.reward.components(texts, completions, rows)
        total = self.reward.combine(components).to(torch.float32)
        verdicts = [part.reward.passed(texts, completions, rows) if part.squash
                    else (components[part.label] >= 1.0).tolist()
                    for part in self.reward.parts if hasattr(part.reward, "passed")]
        passed = [all(column) for column in zip(*verdicts)] if verdicts else None
        disagreement = None
        for part in self.reward.parts:
            if ensemble_size(part.reward) > 1:
                members = part.reward.member_scores(texts, completions, rows)
                disagreement = members.float().std(dim=0, correction=0)
        return Scores(total, components, passed, disagreement)
