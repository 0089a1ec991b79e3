"""Batches from encoded examples: padding, packing and length bucketing.

All padding is on the right. Shapes: ``B`` examples, ``T`` the longest row.

* ``collate_sft``: ``input_ids``, ``attention_mask``, ``labels`` — ``[B, T]``.
* ``pack_sft`` + ``collate_packed``: several sequences per row, no padding
  between them; ``position_ids`` restart at 0 at each sequence, and there is no
  ``attention_mask``: transformers then reads the sequence boundaries from the
  position ids and builds a block-diagonal causal mask, so packed sequences
  cannot attend to each other. That detection needs ``use_cache=False`` in the
  forward call (with a KV cache present, transformers keeps a plain causal mask).
* ``collate_preference``: ``2B`` rows, chosen (``prompt + chosen``) in rows
  ``0..B-1`` and rejected (``prompt + rejected``) in rows ``B..2B-1``; with
  ``samples``, ``3B`` rows, the reference samples (``prompt + sample``, XPO) in
  rows ``2B..3B-1``.
* ``collate_unpaired``: ``B`` rows of ``prompt + completion`` and a bool label.

``completion_mask[i, t] = 1`` exactly when ``input_ids[i, t]`` is a completion
token (a consumer predicting token ``t`` from position ``t - 1`` shifts it).
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections.abc import Sequence

import torch

from prefalign.data.tokenize import IGNORE_INDEX
from prefalign.errors import ConfigError, DataError

MEGA_BATCH_FACTOR = 50


def pad_right(rows: Sequence[Sequence[int]], value: int, dtype: torch.dtype = torch.long,
              length: int | None = None) -> torch.Tensor:
    """Stack ``rows`` into a ``[len(rows), length]`` tensor, filling the right with ``value``."""
    length = max((len(row) for row in rows), default=0) if length is None else length
    out = torch.full((len(rows), length), value, dtype=dtype)
    for index, row in enumerate(rows):
        out[index, :len(row)] = torch.tensor(list(row), dtype=dtype)
    return out


def collate_sft(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` (pad ``pad_id``), ``attention_mask``, ``labels`` (-100 on padding)."""
    ids = [example["input_ids"] for example in examples]
    return {
        "input_ids": pad_right(ids, pad_id),
        "attention_mask": pad_right([[1] * len(row) for row in ids], 0),
        "labels": pad_right([example["labels"] for example in examples], IGNORE_INDEX),
    }


def _packed_row(examples: Sequence[dict]) -> dict[str, list[int]]:
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        labels = list(example["labels"])
        # The first token of a sequence is never a target on its own; in a packed
        # row it would be predicted from the previous sequence's last token.
        labels[0] = IGNORE_INDEX
        row["input_ids"].extend(example["input_ids"])
        row["labels"].extend(labels)
        row["position_ids"].extend(range(len(labels)))
    return row


def pack_sft(examples: Sequence[dict], max_length: int) -> list[dict[str, list[int]]]:
    """Pack SFT examples into rows of at most ``max_length`` tokens (best-fit decreasing).

    Examples are placed longest first, each into the open row with the least
    room that still fits it (a new row when none does). Each row holds
    ``input_ids``, ``labels`` and ``position_ids`` (0, 1, ... per sequence).
    Deterministic: the result depends only on the examples' lengths and order.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    members: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for index in order:
        size = len(examples[index]["input_ids"])
        if size > max_length:
            raise DataError(f"example {index} has {size} tokens, more than max_length "
                            f"{max_length}; encode with max_length first")
        slot = bisect_left(room, (size, -1))
        if slot == len(room):
            members.append([index])
            insort(room, (max_length - size, len(members) - 1))
        else:
            free, row = room.pop(slot)
            members[row].append(index)
            insort(room, (free - size, row))
    return [_packed_row([examples[i] for i in row]) for row in members]


def collate_packed(rows: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``labels`` and ``position_ids`` of packed rows, and no attention mask.

    Right padding forms its own segment (positions 0, 1, ...) with labels -100;
    causal attention keeps real tokens from ever seeing it.
    """
    length = max(len(row["input_ids"]) for row in rows)
    positions = [list(row["position_ids"]) + list(range(length - len(row["position_ids"])))
                 for row in rows]
    return {
        "input_ids": pad_right([row["input_ids"] for row in rows], pad_id, length=length),
        "labels": pad_right([row["labels"] for row in rows], IGNORE_INDEX, length=length),
        "position_ids": pad_right(positions, 0, length=length),
    }


def _collate_completions(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                         pad_id: int) -> dict[str, torch.Tensor]:
    """Rows ``prompt + completion`` with their attention and completion masks."""
    rows = [list(prompt) + list(completion) for prompt, completion in zip(prompts, completions)]
    return {
        "input_ids": pad_right(rows, pad_id),
        "attention_mask": pad_right([[1] * len(row) for row in rows], 0),
        "completion_mask": pad_right([[0] * len(prompt) + [1] * len(completion)
                                      for prompt, completion in zip(prompts, completions)], 0),
    }


def collate_preference(examples: Sequence[dict], pad_id: int,
                       samples: bool = False) -> dict[str, torch.Tensor]:
    """One batch of ``2B`` rows: chosen rows ``0..B-1``, then rejected rows ``B..2B-1``;
    with ``samples``, then each example's ``sample_ids`` in rows ``2B..3B-1``.

    Returns ``input_ids``, ``attention_mask``, ``completion_mask`` ``[2B or 3B, T]``;
    ``prompt_lengths``, ``chosen_lengths``, ``rejected_lengths`` (and
    ``sample_lengths``) ``[B]`` (token counts); and ``margin`` ``[B]`` when every
    example has one.
    """
    prompts = [example["prompt_ids"] for example in examples]
    fields = ("chosen", "rejected", "sample") if samples else ("chosen", "rejected")
    completions = {name: [example[f"{name}_ids"] for example in examples] for name in fields}
    batch = _collate_completions(prompts * len(fields),
                                 [ids for name in fields for ids in completions[name]], pad_id)
    batch["prompt_lengths"] = torch.tensor([len(ids) for ids in prompts], dtype=torch.long)
    for name in fields:
        batch[f"{name}_lengths"] = torch.tensor([len(ids) for ids in completions[name]],
                                                dtype=torch.long)
    if examples and all("margin" in example for example in examples):
        batch["margin"] = torch.tensor([example["margin"] for example in examples],
                                       dtype=torch.float32)
    return batch


def collate_unpaired(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``completion_mask`` ``[B, T]``; ``prompt_lengths``,
    ``completion_lengths`` ``[B]``; ``labels`` ``[B]`` bool (True = desirable)."""
    prompts = [example["prompt_ids"] for example in examples]
    completions = [example["completion_ids"] for example in examples]
    batch = _collate_completions(prompts, completions, pad_id)
    batch["prompt_lengths"] = torch.tensor([len(ids) for ids in prompts], dtype=torch.long)
    batch["completion_lengths"] = torch.tensor([len(ids) for ids in completions],
                                               dtype=torch.long)
    batch["labels"] = torch.tensor([bool(example["label"]) for example in examples],
                                   dtype=torch.bool)
    return batch


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int,
                           shuffle: bool = True) -> list[list[int]]:
    """Batches of indices whose examples have similar lengths, to waste little padding.

    With ``shuffle``: a seeded permutation of the indices is cut into
    mega-batches of ``50 * batch_size``; each is sorted by length (longest
    first) and cut into batches; the order of all batches is then shuffled with
    the same seed. Without ``shuffle``: all indices sorted by length (longest
    first), cut into batches, in that order. Deterministic for a given seed;
    every index appears exactly once; only the last batch of a mega-batch may be
    short.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    rng = random.Random(seed)
    indices = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(indices)
        group = MEGA_BATCH_FACTOR * batch_size
    else:
        group = max(len(indices), 1)
    batches = []
    for start in range(0, len(indices), group):
        mega = sorted(indices[start:start + group], key=lambda i: -lengths[i])
        batches.extend(mega[i:i + batch_size] for i in range(0, len(mega), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches
