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

For XPO a third completion, the reference sample, follows as its own segment
``[prompt | chosen | rejected | sample]``, laid out like the rejected one: it
sees the prompt and itself only, at the positions it would have after the
prompt alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefalign.data.collate import pad_right

PAD, PROMPT, CHOSEN, REJECTED, SAMPLE = 0, 1, 2, 3, 4


def _fields(samples: bool) -> tuple[str, ...]:
    return ("chosen", "rejected", "sample") if samples else ("chosen", "rejected")


def shared_row_length(example: dict, samples: bool = False) -> int:
    """Tokens in the shared row of one pair: ``len(prompt) + len(chosen) + len(rejected)``
    (``+ len(sample)`` with ``samples``)."""
    return len(example["prompt_ids"]) + sum(len(example[f"{name}_ids"])
                                            for name in _fields(samples))


def shared_prefix_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask ``[B, 1, T, T]`` (True = may attend) of shared rows.

    ``mask[b, 0, q, k] = (k ≤ q) ∧ ¬(q and k in two different completion segments)``:
    each completion sees the prompt and itself. Padding sits at the right of each
    row, so causality alone keeps real queries off it; every query attends at least
    to itself, so no row of the softmax is empty.
    """
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    completion = segment_ids >= CHOSEN
    crossing = (completion.unsqueeze(2) & completion.unsqueeze(1)
                & (segment_ids.unsqueeze(2) != segment_ids.unsqueeze(1)))
    return (causal & ~crossing).unsqueeze(1)


def _shared_row(prompt: Sequence[int], completions: Sequence[Sequence[int]]
                ) -> dict[str, list[int]]:
    """The row ``[prompt | completion 1 | completion 2 | ...]``; every completion's tokens
    take positions ``P, P+1, ...`` and its first token is predicted from ``P − 1``."""
    p = len(prompt)
    if p == 0:
        raise ValueError("collate_preference_shared: a pair with an empty prompt has no token "
                         "to predict its first completion token from")
    row = {"input_ids": list(prompt), "position_ids": list(range(p)),
           "segment_ids": [PROMPT] * p, "predictor_positions": [0] + list(range(p - 1))}
    for segment, completion in enumerate(completions, start=CHOSEN):
        start = len(row["input_ids"])
        row["input_ids"] += list(completion)
        row["position_ids"] += list(range(p, p + len(completion)))
        row["segment_ids"] += [segment] * len(completion)
        row["predictor_positions"] += [p - 1] + list(range(start, start + len(completion) - 1))
    return row


def collate_preference_shared(examples: Sequence[dict], pad_id: int,
                              samples: bool = False) -> dict[str, torch.Tensor]:
    """One row ``[prompt | chosen | rejected]`` per pair (``[... | sample]`` with
    ``samples``: each example's ``sample_ids``), right-padded to the longest.

    Returns, for ``B`` pairs and rows of ``T`` tokens:

    * ``input_ids`` ``[B, T]`` (``pad_id`` on padding);
    * ``position_ids`` ``[B, T]``: ``0 .. P+C−1`` then ``P .. P+R−1`` (then
      ``P .. P+S−1``; 0 on padding);
    * ``segment_ids`` ``[B, T]`` int8: ``PAD`` 0, ``PROMPT`` 1, ``CHOSEN`` 2, ``REJECTED`` 3,
      ``SAMPLE`` 4;
    * ``attention_mask`` ``[B, 1, T, T]`` bool: ``shared_prefix_mask(segment_ids)``;
    * ``completion_mask`` ``[B, T]``: 1 on completion tokens;
    * ``predictor_positions`` ``[B, T]``: the position whose hidden state predicts
      each token (``t − 1``, except ``P − 1`` for the first token of each completion);
    * ``prompt_lengths``, ``chosen_lengths``, ``rejected_lengths`` (``sample_lengths``)
      ``[B]``, and ``margin`` ``[B]`` when every example has one — as
      ``collate_preference``.
    """
    fields = _fields(samples)
    rows = [_shared_row(e["prompt_ids"], [e[f"{name}_ids"] for name in fields])
            for e in examples]
    segment_ids = pad_right([row["segment_ids"] for row in rows], PAD, dtype=torch.int8)
    batch = {
        "input_ids": pad_right([row["input_ids"] for row in rows], pad_id),
        "position_ids": pad_right([row["position_ids"] for row in rows], 0),
        "segment_ids": segment_ids,
        "attention_mask": shared_prefix_mask(segment_ids),
        "completion_mask": (segment_ids >= CHOSEN).long(),
        "predictor_positions": pad_right([row["predictor_positions"] for row in rows], 0),
        "prompt_lengths": torch.tensor([len(e["prompt_ids"]) for e in examples]),
        **{f"{name}_lengths": torch.tensor([len(e[f"{name}_ids"]) for e in examples])
           for name in fields},
    }
    if examples and all("margin" in e for e in examples):
        batch["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float32)
    return batch


def split_shared_sums(per_token: torch.Tensor, segment_ids: torch.Tensor,
                      samples: bool = False) -> torch.Tensor:
    """Per-pair sums of per-token values over chosen, then rejected (then sample) tokens:
    ``[2B]`` (``[3B]``).

    The result is ordered like the row layout of ``collate_preference`` (chosen sums
    ``0..B−1``, then rejected sums ``B..2B−1``, then sample sums).
    Shapes: ``per_token``, ``segment_ids`` ``[B, T]``.
    """
    zero = torch.zeros_like(per_token)
    segments = (CHOSEN, REJECTED, SAMPLE) if samples else (CHOSEN, REJECTED)
    return torch.cat([torch.where(segment_ids == segment, per_token, zero).sum(-1)
                      for segment in segments])
