"""A trained step reward model (PRM or ORM) loaded for scoring.

``StepRewardModel.load(path)`` reads a ``prefalign rm objective=process|outcome``
result (``runs/<name>/final``); ``step_probabilities`` gives each solution's
per-step probabilities ``σ(z_k)`` in one forward pass per solution, and
``score`` aggregates them as the model was configured (or as asked). A model with a
frozen backbone reads its features through the feature cache, so a PRM and an ORM
on the same backbone share one pass over the same solutions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from prefalign.data.schema import UnusableRecord
from prefalign.errors import DataError, ModelError
from prefalign.losses.process import aggregate
from prefalign.models.heads import ScalarHeadModel, load_scalar_head_model
from prefalign.rewards.steps import (
    cached_boundary_features,
    encode_steps,
    head_probabilities,
    step_probabilities,
)

STEP_MODEL_FILE = "step_reward_model.json"


@dataclass
class StepRewardModel:
    """A scalar-head model read at step boundaries, with its objective and aggregation."""

    model: ScalarHeadModel
    tokenizer: object
    objective: str
    aggregation: str
    max_length: int
    frozen: bool = False
    batch_size: int = 16

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 16) -> StepRewardModel:
        path = Path(path)
        if (path / "final" / STEP_MODEL_FILE).is_file():
            path = path / "final"
        meta_path = path / STEP_MODEL_FILE
        if not meta_path.is_file():
            raise ModelError(f"{path} is not a step reward model (no {STEP_MODEL_FILE}; train "
                             "one with `prefalign rm objective=process` or `outcome`)")
        meta = json.loads(meta_path.read_text())
        model, tokenizer = load_scalar_head_model(path)
        return cls(model.eval(), tokenizer, meta["objective"], meta["aggregation"],
                   int(meta["max_length"]), meta.get("tuning") == "frozen", batch_size)

    def step_probabilities(self, prompts: Sequence, solutions: Sequence[Sequence[str]]
                           ) -> list[torch.Tensor]:
        """Per-step probabilities ``[K_i]`` of each (prompt, steps); a solution too long for
        the model is cut to the steps that fit (at least one must)."""
        encoded = []
        for index, (prompt, steps) in enumerate(zip(prompts, solutions)):
            for keep in range(len(steps), 0, -1):
                try:
                    encoded.append(encode_steps(prompt, steps[:keep], self.tokenizer,
                                                self.max_length))
                    break
                except UnusableRecord as err:
                    if err.reason != "too long":
                        raise DataError(f"solution {index} cannot be scored: {err.reason}"
                                        ) from None
            else:
                raise DataError(f"solution {index}: not even its first step fits "
                                f"{self.max_length} tokens")
        pad_id = self.tokenizer.pad_token_id
        if not self.frozen:
            return step_probabilities(self.model, encoded, pad_id, self.batch_size)
        # a frozen backbone's features are shared with training and with other heads
        features, _ = cached_boundary_features(self.model, encoded, pad_id, self.batch_size)
        return head_probabilities(self.model, features)

    def score(self, prompts: Sequence, solutions: Sequence[Sequence[str]],
              how: str | None = None) -> list[float]:
        """Each solution's aggregated score (default: the model's own aggregation)."""
        return [aggregate(p, how or self.aggregation)
                for p in self.step_probabilities(prompts, solutions)]
