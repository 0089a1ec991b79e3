"""Trained reward models: loading, batched scoring, and the ``rm`` reward.

A saved reward model is a directory with ``reward_model.json`` (objective,
tuning, tokenisation, ensemble members, penalty λ) and one saved scalar-head
model per member: the directory itself for a single model, ``member-<i>/``
for an ensemble. A member holds its head and, unless its backbone was frozen,
its LoRA adapter or full weights; a frozen member records only its backbone's
source. Members that share a frozen backbone share one copy of it at scoring
time, and one forward pass feeds all their heads.

``RewardModel.load(path).score(prompts, responses)`` renders and truncates
text exactly as training did and returns ``[N]`` float32 scores, with no
gradients. For an ensemble the score is the penalised mean ``r̄ − λ·s``
(``ensemble.py``); ``score_ensemble`` returns mean, std and members too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from prefalign.errors import ModelError
from prefalign.models.heads import HEAD_WEIGHTS, ScalarHeadModel, read_head_config
from prefalign.rewards.base import RewardFunction, register_reward
from prefalign.rewards.ensemble import EnsembleScores, ensemble_scores
from prefalign.rewards.features import (
    Tokenization,
    cached_last_token_features,
    encode_responses,
    last_token_features,
)

METADATA_FILE = "reward_model.json"
FORMAT = "prefalign-reward-model"
FORMAT_VERSION = 1


def write_metadata(path: str | Path, *, objective: str, tuning: str, members: list[str],
                   penalty: float, tokenization: Tokenization, backbone: str,
                   score_mean: float | None = None, score_std: float | None = None) -> None:
    """Write ``reward_model.json`` into ``path`` (which already holds the members)."""
    from prefalign.engine.rundir import atomic_write_json

    atomic_write_json(Path(path) / METADATA_FILE, {
        "format": FORMAT, "version": FORMAT_VERSION, "objective": objective, "tuning": tuning,
        "members": members, "penalty": penalty, "tokenization": tokenization.to_dict(),
        "backbone": backbone, "score_mean": score_mean, "score_std": score_std})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``reward_model.json`` of ``path``; a clear ``ModelError`` if it is not a reward model."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"reward model not found: {path}")
    if not path.is_dir():
        raise ModelError(f"{path} is a file, not a reward-model directory")
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        what = ("a language model or adapter, not a reward model"
                if any((path / f).is_file() for f in ("config.json", "adapter_config.json"))
                else "not a reward model")
        hint = (f"; a trained run keeps its reward model in {path / 'final'}"
                if (path / "final" / METADATA_FILE).is_file()
                else "; train one with `prefalign rm`")
        raise ModelError(f"{path} is {what} (no {METADATA_FILE}){hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"unreadable {meta_path}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not meta.get("members"):
        raise ModelError(f"{meta_path} is not a prefalign reward-model description")
    return meta


def _load_head(member_dir: Path, hidden_size: int) -> nn.Linear:
    config = read_head_config(member_dir)
    if config["hidden_size"] != hidden_size:
        raise ModelError(f"the head in {member_dir} has hidden size {config['hidden_size']}, "
                         f"its backbone {hidden_size}")
    head = nn.Linear(hidden_size, 1, dtype=torch.float32)
    head.load_state_dict(load_file(str(member_dir / HEAD_WEIGHTS)))
    return head.requires_grad_(False).eval()


@dataclass
class _Backbone:
    """One loaded backbone and the member heads that read its features."""

    model: ScalarHeadModel
    tokenizer: Any
    tokenization: Tokenization
    heads: list[tuple[int, nn.Linear]] = field(default_factory=list)


def _has_own_weights(member_dir: Path) -> bool:
    return (member_dir / "config.json").is_file() or (member_dir / "adapter_config.json").is_file()


class RewardModel:
    """A loaded reward model (one member or an ensemble), ready to score text."""

    def __init__(self, backbones: list[_Backbone], num_members: int, penalty: float,
                 metadata: list[dict[str, Any]], feature_cache: bool = False):
        self.backbones, self.num_members = backbones, num_members
        self.penalty, self.metadata = penalty, metadata
        self.feature_cache = feature_cache

    @classmethod
    def load(cls, path: str | Path | Sequence[str | Path], *, penalty: float | None = None,
             dtype: str = "auto", device: str | torch.device | None = None,
             feature_cache: bool = False) -> RewardModel:
        """Load the reward model saved at ``path``; a list of paths forms one ensemble of
        all their members. ``penalty`` (λ) defaults to the value saved with the first.
        ``feature_cache`` keeps backbone features on disk (for data scored repeatedly:
        evaluation, filtering; not for fresh samples)."""
        from prefalign.models.load import load_model

        paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
        if not paths:
            raise ModelError("no reward-model path given")
        backbones: list[_Backbone] = []
        shared: dict[tuple[str, Tokenization], _Backbone] = {}
        metadata, index = [], 0
        for root in paths:
            meta = read_metadata(root)
            metadata.append(meta)
            tokenization = Tokenization.from_dict(meta.get("tokenization") or {})
            for member in meta["members"]:
                member_dir = (root / member).resolve()
                if _has_own_weights(member_dir):
                    from prefalign.models.heads import load_scalar_head_model

                    model, tokenizer = load_scalar_head_model(member_dir, dtype=dtype,
                                                              device=device)
                    group = _Backbone(model.eval(), tokenizer, tokenization)
                    backbones.append(group)
                else:
                    source = read_head_config(member_dir).get("backbone_source") or ""
                    if not source:
                        raise ModelError(f"the head in {member_dir} records no backbone source")
                    group = shared.get((source, tokenization))
                    if group is None:
                        causal_lm, tokenizer = load_model(source, dtype=dtype, device=device)
                        model = ScalarHeadModel.from_causal_lm(causal_lm, source=source).eval()
                        group = _Backbone(model, tokenizer, tokenization)
                        shared[(source, tokenization)] = group
                        backbones.append(group)
                head = _load_head(member_dir, group.model.hidden_size)
                group.heads.append((index, head.to(next(group.model.parameters()).device)))
                index += 1
        for group in backbones:
            group.model.requires_grad_(False)
        chosen_penalty = float(metadata[0].get("penalty", 1.0)) if penalty is None else penalty
        return cls(backbones, index, chosen_penalty, metadata, feature_cache)

    @property
    def objective(self) -> str:
        return str(self.metadata[0].get("objective", "pairwise"))

    def score_members(self, prompts: Sequence[Any], responses: Sequence[Any],
                      batch_size: int = 16) -> torch.Tensor:
        """Scores ``[K, N]`` of every member (float32, CPU, no gradients)."""
        scores = torch.empty(self.num_members, len(responses), dtype=torch.float32)
        for group in self.backbones:
            sequences = encode_responses(prompts, responses, group.tokenizer, group.tokenization)
            pad_id = group.tokenizer.pad_token_id
            if self.feature_cache:
                features, _ = cached_last_token_features(group.model, sequences, pad_id,
                                                         batch_size)
            else:
                features = last_token_features(group.model, sequences, pad_id, batch_size)
            with torch.no_grad():
                for member, head in group.heads:
                    scores[member] = head(features.to(head.weight.device)).squeeze(-1).cpu()
        return scores

    def score_ensemble(self, prompts: Sequence[Any], responses: Sequence[Any],
                       batch_size: int = 16, penalty: float | None = None) -> EnsembleScores:
        """Member scores with their mean, std and ``mean − λ·std`` (``[N]`` each)."""
        members = self.score_members(prompts, responses, batch_size)
        return ensemble_scores(members, self.penalty if penalty is None else penalty)

    def score(self, prompts: Sequence[Any], responses: Sequence[Any], batch_size: int = 16,
              penalty: float | None = None) -> torch.Tensor:
        """Scores ``[N]``: the member's score, or an ensemble's ``mean − λ·std``."""
        return self.score_ensemble(prompts, responses, batch_size, penalty).penalised


class RewardModelReward:
    """The ``rm`` reward: a trained reward model (or ensemble) as a reward function.

    Reads the original prompt from ``rows[i]["prompt"]`` when present (chat
    messages included), so the text is rendered exactly as in training; else
    the given prompt string. Scores are unbounded (a composite squashes them).
    """

    required_fields: tuple[str, ...] = ()
    bounded = False

    def __init__(self, model: RewardModel, batch_size: int):
        self.model, self.batch_size = model, batch_size
        self.name = "rm"

    def _prompts(self, prompts: list[str], rows: list[dict]) -> list[Any]:
        return [row.get("prompt", prompt) if isinstance(row, dict) else prompt
                for prompt, row in zip(prompts, rows)]

    def member_scores(self, prompts: list[str], completions: list[str],
                      rows: list[dict]) -> torch.Tensor:
        """Scores ``[K, N]`` of each ensemble member."""
        return self.model.score_members(self._prompts(prompts, rows), completions,
                                        self.batch_size)

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor:
        return self.model.score(self._prompts(prompts, rows), completions, self.batch_size)


@register_reward("rm")
def reward_model(path: str, ensemble: list[str] | None = None, penalty: float | None = None,
                 batch_size: int = 16) -> RewardFunction:
    """A reward model from ``path``; ``ensemble`` adds the members of further saved
    reward models, and ``penalty`` (λ) sets the ensemble's ``mean − λ·std``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if penalty is not None and penalty < 0:
        raise ValueError(f"penalty must be ≥ 0, got {penalty}")
    return RewardModelReward(RewardModel.load([path, *(ensemble or [])], penalty=penalty),
                             batch_size)
