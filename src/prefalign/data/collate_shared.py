"""Prefix-shared preference batches: one row per pair, the prompt computed once.

``collate_preference`` builds ``2B`` rows, ``prompt + chosen`` and ``prompt +
rejected``, so every prompt token goes through the model twice. Here each pair
is one row ``[prompt | chosen | rejected]`` and an attention mask keeps the two
completions apart::

    key →        prompt    chosen   rejected
    query prompt  causal      ·         ·
          chosen  all       causal      ·
        rejected  all         ·       causal

Rejected tokens take the positions they would have after the prompt alone
(``position_ids`` restart at ``len(prompt)``), so with rotary or learned
positions every chosen and rejected token sees exactly the keys, values and
positions it sees in the two-row layout: the per-token log-probs, the losses
and the gradients are the same, and the prompt costs one pass instead of two.
Gradients from both completions reach the prompt's keys and values and add up,
as they do across the two rows.

The first rejected token is predicted from the last prompt token, not from the
token just before it in the row (the last chosen token), so the batch also
carries ``predictor_positions``: the row position whose hidden state predicts
each token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefalign.data.collate import pad_right

PAD, PROMPT, CHOSEN, REJECTED = 0, 1, 2, 3


def shared_row_length(example: dict) -> int:
    """Tokens in the shared row of one pair: ``len(prompt) + len(chosen) + len(rejected)``."""
    return len(example["prompt_ids"]) + len(example["chosen_ids"]) + len(example["rejected_ids"])


def shared_prefix_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask ``[B, 1, T, T]`` (True = may attend) of shared rows.

    ``mask[b, 0, q, k] = (k ≤ q) ∧ ¬(segment[b, q] = rejected ∧ segment[b, k] = chosen)``.
    Padding sits at the right of each row, so causality alone keeps real
    queries off it; every query attends at least to itself, so no row of the
    softmax is empty.
    """
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    crossing = (segment_ids == REJECTED).unsqueeze(2) & (segment_ids == CHOSEN).unsqueeze(1)
    return (causal & ~crossing).unsqueeze(1)


def _shared_row(prompt: Sequence[int], chosen: Sequence[int],
                rejected: Sequence[int]) -> dict[str, list[int]]:
    p, c, r = len(prompt), len(chosen), len(rejected)
    if p == 0:
        raise ValueError("collate_preference_shared: a pair with an empty prompt has no token "
                         "to predict its first completion token from")
    predictors = list(range(-1, p + c - 1)) + [p - 1] + list(range(p + c, p + c + r - 1))
    predictors[0] = 0
    return {
        "input_ids": list(prompt) + list(chosen) + list(rejected),
        "position_ids": list(range(p + c)) + list(range(p, p + r)),
        "segment_ids": [PROMPT] * p + [CHOSEN] * c + [REJECTED] * r,
        "predictor_positions": predictors,
    }


def collate_preference_shared(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """One row ``[prompt | chosen | rejected]`` per pair, right-padded to the longest.

    Returns, for ``B`` pairs and rows of ``T`` tokens:

    * ``input_ids`` ``[B, T]`` (``pad_id`` on padding);
    * ``position_ids`` ``[B, T]``: ``0 .. P+C−1`` then ``P .. P+R−1`` (0 on padding);
    * ``segment_ids`` ``[B, T]`` int8: ``PAD`` 0, ``PROMPT`` 1, ``CHOSEN`` 2, ``REJECTED`` 3;
    * ``attention_mask`` ``[B, 1, T, T]`` bool: ``shared_prefix_mask(segment_ids)``;
    * ``completion_mask`` ``[B, T]``: 1 on chosen and rejected tokens;
    * ``predictor_positions`` ``[B, T]``: the position whose hidden state predicts
      each token (``t − 1``, except ``P − 1`` for the first rejected token);
    * ``prompt_lengths``, ``chosen_lengths``, ``rejected_lengths`` ``[B]``, and
      ``margin`` ``[B]`` when every example has one — as ``collate_preference``.
    """
    rows = [_shared_row(e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]) for e in examples]
    segment_ids = pad_right([row["segment_ids"] for row in rows], PAD, dtype=torch.int8)
    batch = {
        "input_ids": pad_right([row["input_ids"] for row in rows], pad_id),
        "position_ids": pad_right([row["position_ids"] for row in rows], 0),
        "segment_ids": segment_ids,
        "attention_mask": shared_prefix_mask(segment_ids),
        "completion_mask": (segment_ids >= CHOSEN).long(),
        "predictor_positions": pad_right([row["predictor_positions"] for row in rows], 0),
        "prompt_lengths": torch.tensor([len(e["prompt_ids"]) for e in examples]),
        "chosen_lengths": torch.tensor([len(e["chosen_ids"]) for e in examples]),
        "rejected_lengths": torch.tensor([len(e["rejected_ids"]) for e in examples]),
    }
    if examples and all("margin" in e for e in examples):
        batch["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float32)
    return batch


def split_shared_sums(per_token: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Per-pair sums of per-token values over chosen, then rejected tokens: ``[2B]``.

    The result is ordered like the two-row layout (chosen sums ``0..B−1``, then
    rejected sums ``B..2B−1``). Shapes: ``per_token``, ``segment_ids`` ``[B, T]``.
    """
    zero = torch.zeros_like(per_token)
    chosen = torch.where(segment_ids == CHOSEN, per_token, zero).sum(-1)
    rejected = torch.where(segment_ids == REJECTED, per_token, zero).sum(-1)
    return torch.cat([chosen, rejected])
