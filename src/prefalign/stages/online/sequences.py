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


@torch.no_grad()
def forward_in_batches(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                       rows_per_batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """No-grad ``PolicyModel`` passes over every group, about ``rows_per_batch``
    completions at a time: ``(logps, values)`` ``[N, Tc]`` on the CPU (``values`` ``None``
    without a value head)."""
    device = next(model.parameters()).device
    group = group_size(tensors)
    prompts = tensors["prompt_ids"].shape[0]
    rows, width = tensors["completion_ids"].shape
    logps = torch.zeros((rows, width), dtype=torch.float32)
    values: torch.Tensor | None = None
    step = max(1, rows_per_batch // group)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, prompts, step):
            chosen = list(range(start, min(start + step, prompts)))
            batch = select_groups(tensors, chosen, device)
            chunk_logps, chunk_values = forward(model, batch)
            lo, hi = start * group, (chosen[-1] + 1) * group
            cols = chunk_logps.shape[1]
            logps[lo:hi, :cols] = chunk_logps.float().cpu()
            if chunk_values is not None:
                if values is None:
                    values = torch.zeros((rows, width), dtype=torch.float32)
                values[lo:hi, :cols] = chunk_values.float().cpu()
    finally:
        model.train(was_training)
    return logps, values
