"""Per-token log-probabilities without materialising ``[B, T, V]`` logits or an fp32
log-softmax over them.

Two savings, both exact:

* :func:`selective_log_softmax` computes ``logits[i, y_i] − logsumexp(logits[i])``
  one block of rows at a time (in fp32 for half-precision inputs), and its
  backward rebuilds the softmax block by block, so only ``[N]`` statistics are
  kept between forward and backward.
* :func:`completion_logprobs` applies the LM head only at the positions whose
  next token is a completion token, a block of positions at a time; prompt and
  padding positions never reach the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half precision inputs, the input's own dtype otherwise."""
    return torch.promote_types(dtype, torch.float32)


class _SelectiveLogSoftmax(torch.autograd.Function):
    """``log_softmax(logits)[index]`` row-block by row-block; see the module docstring."""

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, chunk_size: int) -> Tensor:
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty(logits.shape[0], dtype=dtype, device=logits.device)
        log_normaliser = torch.empty_like(out)
        for start in range(0, logits.shape[0], chunk_size):
            block = logits[start:start + chunk_size].to(dtype)
            rows = index[start:start + chunk_size]
            log_normaliser[start:start + chunk_size] = torch.logsumexp(block, dim=-1)
            picked = block.gather(-1, rows.unsqueeze(-1)).squeeze(-1)
            out[start:start + chunk_size] = picked - log_normaliser[start:start + chunk_size]
        ctx.save_for_backward(logits, index, log_normaliser)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None]:
        # d/dz_v [z_y − logsumexp(z)] = 1[v = y] − softmax(z)_v
        logits, index, log_normaliser = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        chunk = ctx.chunk_size
        for start in range(0, logits.shape[0], chunk):
            rows = slice(start, start + chunk)
            block = logits[rows].to(log_normaliser.dtype)
            probs = torch.exp(block - log_normaliser[rows].unsqueeze(-1))
            grad = -grad_out[rows].unsqueeze(-1) * probs
            grad.scatter_add_(-1, index[rows].unsqueeze(-1), grad_out[rows].unsqueeze(-1))
            grad_logits[rows] = grad.to(logits.dtype)
        return grad_logits, None, None


def selective_log_softmax(logits: Tensor, index: Tensor, chunk_size: int = 1024) -> Tensor:
    """``log_softmax(logits, -1)`` gathered at ``index``, computed ``chunk_size`` rows at a time.

    ``out[...] = logits[..., index[...]] − logsumexp(logits[...])``. Half-precision
    blocks are upcast to fp32 for the logsumexp; the result is fp32 (or the input
    dtype when that is wider). Differentiable with respect to ``logits``.
    Shapes: ``logits`` ``[..., V]``, ``index`` ``[...]`` (int64) → ``[...]``.
    """
    if logits.shape[:-1] != index.shape:
        raise ValueError(f"selective_log_softmax: logits {tuple(logits.shape)} need index of "
                         f"shape {tuple(logits.shape[:-1])}, got {tuple(index.shape)}")
    if chunk_size < 1:
        raise ValueError(f"selective_log_softmax: chunk_size must be >= 1, got {chunk_size}")
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_index = index.reshape(-1).long()
    out = _SelectiveLogSoftmax.apply(flat_logits, flat_index, chunk_size)
    return out.reshape(index.shape)


def _head_logprobs(lm_head: nn.Module | Tensor, hidden: Tensor, targets: Tensor,
                   chunk_size: int) -> Tensor:
    logits = lm_head(hidden) if isinstance(lm_head, nn.Module) else F.linear(hidden, lm_head)
    return selective_log_softmax(logits, targets, chunk_size)


def completion_logprobs(hidden: Tensor, lm_head: nn.Module | Tensor, input_ids: Tensor,
                        completion_mask: Tensor, chunk_size: int = 1024,
                        recompute_logits: bool = False) -> Tensor:
    """Per-token log-probs of the completion tokens, applying the LM head only where needed.

    ``out[b, t] = log p(input_ids[b, t] | hidden[b, t − 1])`` where
    ``completion_mask[b, t]`` is 1, and 0 elsewhere: the hidden state at ``t − 1``
    predicts token ``t``. The head (a module such as ``model.lm_head``, or its
    weight ``[V, H]``) runs on blocks of ``chunk_size`` selected positions, so
    ``[B, T, V]`` logits are never built. Exact and differentiable with respect to
    ``hidden`` and the head's parameters. With ``recompute_logits`` each block's
    logits are recomputed in the backward pass instead of being kept, trading one
    extra head matmul for memory.

    Shapes: ``hidden`` ``[B, T, H]``; ``input_ids``, ``completion_mask`` ``[B, T]``
    → ``[B, T]`` (fp32, or the hidden dtype when wider).
    """
    if input_ids.shape != completion_mask.shape or hidden.shape[:2] != input_ids.shape:
        raise ValueError(
            f"completion_logprobs: hidden {tuple(hidden.shape)}, input_ids "
            f"{tuple(input_ids.shape)} and completion_mask {tuple(completion_mask.shape)} "
            "must share [B, T]")
    scored = completion_mask.bool()
    if bool(scored[:, 0].any()):
        raise ValueError("completion_logprobs: the first position cannot be a completion "
                         "token (no hidden state precedes it)")
    batch_idx, pred_idx = torch.nonzero(scored[:, 1:], as_tuple=True)
    target_pos = pred_idx + 1
    targets = input_ids[batch_idx, target_pos]
    selected = hidden[batch_idx, pred_idx]
    pieces = []
    for start in range(0, selected.shape[0], chunk_size):
        block = selected[start:start + chunk_size]
        block_targets = targets[start:start + chunk_size]
        if recompute_logits:
            pieces.append(checkpoint(_head_logprobs, lm_head, block, block_targets, chunk_size,
                                     use_reentrant=False))
        else:
            pieces.append(_head_logprobs(lm_head, block, block_targets, chunk_size))
    dtype = _compute_dtype(hidden.dtype)
    values = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=dtype)
    out = torch.zeros(input_ids.shape, dtype=dtype, device=hidden.device)
    return out.index_put((batch_idx, target_pos), values.to(dtype))


def sequence_logps(per_token: Tensor, mask: Tensor, average: bool = False) -> Tensor:
    """Sum of per-token log-probs over the masked tokens, or their mean when ``average``.

    An empty completion gives 0. Shapes: ``per_token``, ``mask`` ``[B, T]`` → ``[B]``.
    """
    mask = mask.bool()
    total = torch.where(mask, per_token, torch.zeros_like(per_token)).sum(dim=-1)
    if not average:
        return total
    return total / mask.sum(dim=-1).clamp(min=1)
