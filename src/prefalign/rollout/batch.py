"""Token ids in, training tensors out: the prompts an engine sees, and the grouped
layout in which the training forward scores the sampled tokens.

Every completion belongs to a group of ``G`` completions of the same prompt, so
a batch stores each prompt once::

    prompt_ids, prompt_mask          [P, Tp]   left-padded (every prompt ends at Tp)
    completion_ids, completion_mask  [P·G, Tc] right-padded, row p·G + g is sample g
                                               of prompt p
    completion_lengths               [P·G]

The training sequence of a row is ``prompt + completion`` exactly as generated
(no re-tokenisation of text), so the forward's log-probs are those of the very
tokens that were sampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefalign.data.tokenize import render_prompt, truncate_prompt


def encode_prompts(records: Sequence[dict], tokenizer, *, use_chat_template: bool = True,
                   max_prompt_length: int | None = None, truncation: str = "keep_end",
                   response_prefix: str = "") -> list[list[int]]:
    """Token ids of each record's prompt, rendered for generation (chat template with
    the assistant turn opened), followed by ``response_prefix``, truncated."""
    encoded = []
    for record in records:
        text = render_prompt(record["prompt"], tokenizer, use_chat_template) + response_prefix
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        encoded.append(truncate_prompt(ids, max_prompt_length, truncation))
    return encoded


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ids`` and ``mask`` ``[B, max_len]``, padded on the left."""
    width = max(len(ids) for ids in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, values in enumerate(rows):
        ids[row, width - len(values):] = torch.tensor(list(values), dtype=torch.long)
        mask[row, width - len(values):] = 1
    return ids, mask


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ids`` and ``mask`` ``[B, max_len]``, padded on the right."""
    width = max(len(ids) for ids in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, values in enumerate(rows):
        ids[row, :len(values)] = torch.tensor(list(values), dtype=torch.long)
        mask[row, :len(values)] = 1
    return ids, mask


def pack_groups(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                pad_id: int) -> dict[str, torch.Tensor]:
    """The grouped layout of the module docstring for ``P`` prompts and ``P·G``
    completions (``G`` consecutive completions per prompt, every completion non-empty)."""
    if not prompt_ids or len(completion_ids) % len(prompt_ids):
        raise ValueError(f"{len(completion_ids)} completions do not form equal groups for "
                         f"{len(prompt_ids)} prompts")
    if any(len(c) == 0 for c in completion_ids) or any(len(p) == 0 for p in prompt_ids):
        raise ValueError("prompts and completions must each have at least one token")
    prompts, prompt_mask = left_pad(prompt_ids, pad_id)
    completions, completion_mask = right_pad(completion_ids, pad_id)
    return {"prompt_ids": prompts, "prompt_mask": prompt_mask, "completion_ids": completions,
            "completion_mask": completion_mask,
            "completion_lengths": completion_mask.sum(-1)}
