"""Step reward models: how a step-split solution becomes tokens, and its per-step scores.

A solution is rendered as plain text, the question first and then one step per
line::

    Question: <question>
    Answer:
    <step 1>
    <step 2>
    ...

Each step is tokenised on its own (with its newline), so the token ids of a
prefix are exactly the first tokens of the whole, and step ``k``'s *boundary*
is the position of its last token (its newline). A step reward model reads its
scalar head there: ``z_k = w·h_{boundary_k} + b``. Causal attention makes
``h_t`` depend only on tokens ``≤ t``, so one forward pass over the whole
solution gives every step's score — the same as scoring each prefix on its own
(a test checks it), for the cost of one pass instead of K.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file

from prefalign.data.schema import UnusableRecord
from prefalign.engine.progress import TrainingProgress
from prefalign.models.heads import ScalarHeadModel
from prefalign.rewards.features import features_cache_path, length_sorted_batches


def question_text(prompt) -> str:
    """The text before the steps; a chat prompt's messages are joined by newlines."""
    text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    return f"Question: {text.strip()}\nAnswer:\n"


@dataclass(frozen=True)
class EncodedSteps:
    """Token ids of a rendered solution and the position of each step's last token."""

    input_ids: list[int]
    boundaries: list[int]


def encode_steps(prompt, steps: Sequence[str], tokenizer, max_length: int) -> EncodedSteps:
    """Render and tokenise ``prompt`` and ``steps`` (see the module docstring).

    Raises ``UnusableRecord`` when the whole solution does not fit ``max_length``
    tokens (a step reward model needs every step) or a step is empty.
    """
    ids = list(tokenizer(question_text(prompt))["input_ids"])
    boundaries = []
    for step in steps:
        text = " ".join(step.split())
        if not text:
            raise UnusableRecord("empty step")
        ids += tokenizer(text + "\n", add_special_tokens=False)["input_ids"]
        boundaries.append(len(ids) - 1)
    if len(ids) > max_length:
        raise UnusableRecord("too long")
    return EncodedSteps(ids, boundaries)


@torch.no_grad()
def boundary_features(model: ScalarHeadModel, encoded: Sequence[EncodedSteps], pad_id: int,
                      batch_size: int = 16) -> list[torch.Tensor]:
    """Backbone features ``[K_i, H]`` (float32, CPU) at the step boundaries of each
    solution, one forward pass per solution, in length-sorted batches."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features: list[torch.Tensor | None] = [None] * len(encoded)
    n_batches = math.ceil(len(encoded) / batch_size)
    try:
        with TrainingProgress(n_batches, enabled=n_batches > 8,
                              description="step features") as progress:
            batches = length_sorted_batches([e.input_ids for e in encoded], batch_size, pad_id)
            for done, (indices, input_ids, mask) in enumerate(batches, start=1):
                hidden = model.hidden_states(input_ids.to(device), mask.to(device))
                for row, index in enumerate(indices):
                    features[index] = hidden[row, encoded[index].boundaries].float().cpu()
                progress.update(done, {})
    finally:
        model.train(was_training)
    return features  # type: ignore[return-value]


def step_probabilities(model: ScalarHeadModel, encoded: Sequence[EncodedSteps], pad_id: int,
                       batch_size: int = 16) -> list[torch.Tensor]:
    """Per-step probabilities ``σ(z_k)`` ``[K_i]`` of each solution."""
    return head_probabilities(model, boundary_features(model, encoded, pad_id, batch_size))


@torch.no_grad()
def head_probabilities(model: ScalarHeadModel, features: Sequence[torch.Tensor]
                       ) -> list[torch.Tensor]:
    """``σ(w·h + b)`` ``[K_i]`` of boundary features ``[K_i, H]``."""
    head = model.head
    return [torch.sigmoid(head(f.to(head.weight)).squeeze(-1)).cpu() for f in features]


def cached_boundary_features(model: ScalarHeadModel, encoded: Sequence[EncodedSteps],
                             pad_id: int, batch_size: int = 16
                             ) -> tuple[list[torch.Tensor], bool]:
    """``boundary_features`` through the disk cache of ``prefalign.rewards.features``
    (keyed by the backbone's weights, the token ids and the boundaries):
    ``(features, from_cache)``."""
    path = features_cache_path(model, [e.input_ids + [-1] + e.boundaries for e in encoded])
    path = path.with_name("steps-" + path.name)
    counts = [len(e.boundaries) for e in encoded]
    if path.is_file():
        stored = load_file(str(path))["features"]
        if stored.shape == (sum(counts), model.hidden_size):
            return list(torch.split(stored, counts)), True
    features = boundary_features(model, encoded, pad_id, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"features": torch.cat(features).contiguous()}, str(tmp))
    tmp.replace(path)
    return features, False
