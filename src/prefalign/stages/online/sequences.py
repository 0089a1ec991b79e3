"""Groups of a rollout's tensors (the grouped layout of ``prefalign.rollout.batch``):
selecting them, trimming padding, and scoring them in no-grad batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

FORWARD_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")


def group_size(tensors: dict[str, torch.Tensor]) -> int:
    return tensors["completion_ids"].shape[0] // tensors["prompt_ids"].shape[0]


def group_rows(prompts: Sequence[int], group: int) -> list[int]:
    """Completion rows of the given prompts: ``p·G + g`` for each prompt ``p``."""
    return [p * group + g for p in prompts for g in range(group)]


def select_groups(tensors: dict[str, torch.Tensor], prompts: Sequence[int],
                  device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The prompts ``prompts`` with their completions, columns that are padding in
    every selected row removed (from the left of prompts, the right of completions)."""
    group = group_size(tensors)
    prompt_index = torch.as_tensor(list(prompts), dtype=torch.long)
    row_index = torch.as_tensor(group_rows(prompts, group), dtype=torch.long)
    prompt_width = int(tensors["prompt_mask"][prompt_index].sum(-1).max())
    completion_width = int(tensors["completion_mask"][row_index].sum(-1).max())
    out = {"prompt_ids": tensors["prompt_ids"][prompt_index, -prompt_width:],
           "prompt_mask": tensors["prompt_mask"][prompt_index, -prompt_width:],
           "completion_ids": tensors["completion_ids"][row_index, :completion_width],
           "completion_mask": tensors["completion_mask"][row_index, :completion_width],
           "completion_lengths": tensors["completion_lengths"][row_index]}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    """``model(prompt_ids, prompt_mask, completion_ids, completion_mask)``."""
    return model(*(batch[key] for key in FORWARD_KEYS))


def consecutive_chunks(prompts: int, rows_per_batch: int, group: int) -> list[list[int]]:
    """Prompts ``0..prompts−1`` in order, about ``rows_per_batch`` completions a chunk."""
    step = max(1, rows_per_batch // group)
    return [list(range(start, min(start + step, prompts))) for start in range(0, prompts, step)]


@torch.no_grad()
def forward_groups(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                   chunks: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """No-grad ``PolicyModel`` passes, one per chunk of prompts (with all their
    completions), in the model's current mode: ``(logps, values)`` ``[N, Tc]`` on the CPU
    (``values`` ``None`` without a value head).

    A pass over the same chunk as a training micro-batch gives the training forward's
    numbers exactly: the same rows, padding and kernels (under the same autocast).
    """
    device = next(model.parameters()).device
    group = group_size(tensors)
    rows, width = tensors["completion_ids"].shape
    logps = torch.zeros((rows, width), dtype=torch.float32)
    values: torch.Tensor | None = None
    for chunk in chunks:
        batch = select_groups(tensors, chunk, device)
        chunk_logps, chunk_values = forward(model, batch)
        index = torch.as_tensor(group_rows(chunk, group), dtype=torch.long)
        cols = chunk_logps.shape[1]
        logps[index, :cols] = chunk_logps.float().cpu()
        if chunk_values is not None:
            if values is None:
                values = torch.zeros((rows, width), dtype=torch.float32)
            values[index, :cols] = chunk_values.float().cpu()
    return logps, values


def forward_in_batches(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                       rows_per_batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``forward_groups`` in eval mode over consecutive chunks of about
    ``rows_per_batch`` completions."""
    chunks = consecutive_chunks(tensors["prompt_ids"].shape[0], rows_per_batch,
                                group_size(tensors))
    was_training = model.training
    model.eval()
    try:
        return forward_groups(model, tensors, chunks)
    finally:
        model.train(was_training)
