"""Reward-model inputs and last-token features, shared by training and scoring.

A reward model reads ``prompt + response`` rendered exactly as in training: the
prompt through the chat template (or as plain text), the response as the
assistant turn, the prompt cut to ``max_prompt_length`` and the response to fit
``max_length`` (``prefalign.data.tokenize``). Its score is ``w·h_last + b``,
where ``h_last [H]`` is the backbone's final hidden state at the last real
token. With a frozen backbone ``h_last`` never changes, so it is computed once
per sequence, without gradients, in length-sorted batches (little padding),
and the head trains on the cached ``[N, H]`` features: the same loss and the
same gradients as running the backbone every step, for a fraction of the cost.
Features can also be kept on disk (``<cache>/reward_features``), keyed by a
hash of the backbone's weights and the exact token ids, so a second run on the
same data (another head, another ensemble member, a flywheel cycle, an
evaluation) reads them instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from prefalign.data.collate import pad_right
from prefalign.data.schema import UnusableRecord
from prefalign.data.tokenize import encode_sft
from prefalign.engine.progress import TrainingProgress
from prefalign.errors import DataError
from prefalign.models.embedded import cache_root
from prefalign.models.fingerprint import model_fingerprint
from prefalign.models.heads import ScalarHeadModel


@dataclass(frozen=True)
class Tokenization:
    """How text becomes reward-model input; saved with the model so scoring matches."""

    max_length: int = 512
    max_prompt_length: int = 384
    truncation: str = "keep_end"
    use_chat_template: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Tokenization:
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})


def encode_response(prompt: Any, response: Any, tokenizer, settings: Tokenization) -> list[int]:
    """Token ids of ``prompt + response``, rendered and truncated as in training.

    Raises ``UnusableRecord`` when the response is empty after truncation.
    """
    example = encode_sft({"prompt": prompt, "completion": response}, tokenizer,
                         max_length=settings.max_length,
                         max_prompt_length=settings.max_prompt_length,
                         truncation=settings.truncation,
                         use_chat_template=settings.use_chat_template)
    return example["input_ids"]


def encode_responses(prompts: Sequence[Any], responses: Sequence[Any], tokenizer,
                     settings: Tokenization) -> list[list[int]]:
    """``encode_response`` for each pair; a response that cannot be scored is a
    ``DataError`` naming its index."""
    if len(prompts) != len(responses):
        raise DataError(f"{len(prompts)} prompts but {len(responses)} responses; "
                        f"they must pair up one to one")
    sequences = []
    for index, (prompt, response) in enumerate(zip(prompts, responses)):
        try:
            sequences.append(encode_response(prompt, response, tokenizer, settings))
        except UnusableRecord as err:
            raise DataError(f"response {index} cannot be scored: {err.reason}") from None
    return sequences


def length_sorted_batches(sequences: Sequence[Sequence[int]], batch_size: int,
                          pad_id: int) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """``(indices, input_ids [b, T], attention_mask [b, T])`` over ``sequences``,
    longest first, right-padded to the longest row of each batch."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        rows = [sequences[i] for i in indices]
        yield (indices, pad_right(rows, pad_id),
               pad_right([[1] * len(row) for row in rows], 0))


def last_token_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``hidden [B, T, H]`` read at each row's last real token (right padding): ``[B, H]``."""
    last = attention_mask.sum(dim=-1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@torch.no_grad()
def last_token_features(model: ScalarHeadModel, sequences: Sequence[Sequence[int]],
                        pad_id: int, batch_size: int = 16) -> torch.Tensor:
    """Backbone features ``[N, H]`` (float32, on CPU) at the last token of each sequence,
    in input order; ``model.head(features)`` equals ``model(input_ids, mask)``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features = torch.empty(len(sequences), model.hidden_size, dtype=torch.float32)
    n_batches = math.ceil(len(sequences) / batch_size)
    try:
        # Quiet for a handful of batches (best-of-n reranking scores a few at a time).
        with TrainingProgress(n_batches, enabled=n_batches > 8,
                              description="features") as progress:
            batches = length_sorted_batches(sequences, batch_size, pad_id)
            for done, (indices, input_ids, mask) in enumerate(batches, start=1):
                hidden = model.hidden_states(input_ids.to(device), mask.to(device))
                features[indices] = last_token_hidden(hidden, mask.to(device)).float().cpu()
                progress.update(done, {})
    finally:
        model.train(was_training)
    return features


def features_cache_path(model: ScalarHeadModel, sequences: Sequence[Sequence[int]]) -> Path:
    """``<cache>/reward_features/<weights hash>-<tokens hash>.safetensors``."""
    digest = hashlib.sha256()
    for sequence in sequences:
        digest.update(json.dumps(list(sequence)).encode())
        digest.update(b"\n")
    name = f"{model_fingerprint(model.backbone)}-{digest.hexdigest()[:24]}.safetensors"
    return cache_root() / "reward_features" / name


def cached_last_token_features(model: ScalarHeadModel, sequences: Sequence[Sequence[int]],
                               pad_id: int, batch_size: int = 16
                               ) -> tuple[torch.Tensor, bool]:
    """``last_token_features`` through the disk cache: ``(features [N, H], from_cache)``."""
    path = features_cache_path(model, sequences)
    if path.is_file():
        stored = load_file(str(path))["features"]
        if stored.shape == (len(sequences), model.hidden_size):
            return stored, True
    features = last_token_features(model, sequences, pad_id, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"features": features.contiguous()}, str(tmp))
    tmp.replace(path)
    return features, False
