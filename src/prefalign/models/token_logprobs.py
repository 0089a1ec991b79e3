"""A causal LM that returns per-token log-probs of completion tokens only.

Wrapping the model in one ``nn.Module`` whose ``forward`` does both the
backbone and the (chunked) LM head keeps distributed wrappers (DDP, FSDP)
working: the whole computation goes through their ``forward``. The LM head and
log-softmax run only at positions that predict a completion token, so no
``[B, T, V]`` tensor is built (see ``prefalign.ops.logprobs``).

The same ``forward`` scores prefix-shared preference rows
(``prefalign.data.collate_shared``): a boolean ``[B, 1, T, T]`` attention mask,
``position_ids`` that restart for the rejected completion, and
``predictor_positions`` naming the hidden state that predicts each token.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from prefalign.ops.logprobs import completion_logprobs, selective_log_softmax

# Attention implementations that take an arbitrary [B, 1, T, T] mask.
MASK_4D_ATTENTION = ("sdpa", "eager")


def base_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class CompletionLogprobModel(nn.Module):
    """``forward(input_ids, attention_mask, completion_mask) -> [B, T]`` log-probs.

    Entry ``[b, t]`` is ``log p(input_ids[b, t] | input_ids[b, :t])`` where
    ``completion_mask[b, t]`` is 1, and 0 elsewhere. ``position_ids`` may be
    given for packed rows (then ``attention_mask`` is None).

    For prefix-shared rows, ``attention_mask`` is a boolean ``[B, 1, T, T]``
    mask (True = may attend) and ``predictor_positions[b, t]`` is the position
    whose hidden state predicts ``input_ids[b, t]``; entry ``[b, t]`` is then
    ``log softmax(W · hidden[b, predictor_positions[b, t]])[input_ids[b, t]]``
    (the plain layout is ``predictor_positions[b, t] = t − 1``). The model's
    attention implementation must be one of ``MASK_4D_ATTENTION``.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    @property
    def config(self):
        return base_causal_lm(self.lm).config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                completion_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                predictor_positions: torch.Tensor | None = None) -> torch.Tensor:
        causal_lm = base_causal_lm(self.lm)
        backbone = causal_lm.get_decoder()
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask_4d(causal_lm, attention_mask)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, use_cache=False).last_hidden_state
        head = causal_lm.get_output_embeddings()
        if predictor_positions is None:
            return completion_logprobs(hidden, head, input_ids, completion_mask)
        return logprobs_at_predictors(hidden, head, input_ids, completion_mask,
                                      predictor_positions)

    def reference_context(self):
        """A context in which the model acts as its own frozen reference (LoRA disabled)."""
        disable = getattr(self.lm, "disable_adapter", None)
        return disable() if callable(disable) else contextlib.nullcontext()


def supports_mask_4d(model: nn.Module) -> bool:
    """True when the model's attention takes a custom ``[B, 1, T, T]`` mask."""
    config = base_causal_lm(model).config
    return getattr(config, "_attn_implementation", None) in MASK_4D_ATTENTION


def attention_mask_4d(causal_lm: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """A boolean ``[B, 1, T, T]`` mask in the form the model's attention adds or selects.

    sdpa takes the boolean mask as it is; eager attention adds the mask to the
    scores, so it gets 0 where attention is allowed and the dtype's lowest value
    elsewhere. Other implementations (flash, flex) take no such mask.
    """
    implementation = getattr(causal_lm.config, "_attn_implementation", None)
    if implementation not in MASK_4D_ATTENTION:
        raise ValueError(f"a [B, 1, T, T] attention mask needs attention in "
                         f"{MASK_4D_ATTENTION}, the model uses {implementation!r}")
    if mask.dtype != torch.bool or implementation == "sdpa":
        return mask
    dtype = causal_lm.get_input_embeddings().weight.dtype
    blocked = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=mask.device)
    return torch.where(mask, torch.zeros((), dtype=dtype, device=mask.device), blocked)


def logprobs_at_predictors(hidden: torch.Tensor, lm_head: nn.Module, input_ids: torch.Tensor,
                           completion_mask: torch.Tensor, predictor_positions: torch.Tensor,
                           chunk_size: int = 1024) -> torch.Tensor:
    """Per-token log-probs of completion tokens, each predicted from a named position.

    ``out[b, t] = log softmax(lm_head(hidden[b, s]))[input_ids[b, t]]`` with
    ``s = predictor_positions[b, t]``, where ``completion_mask[b, t]`` is 1, and 0
    elsewhere. The head runs on ``chunk_size`` selected positions at a time, so
    ``[B, T, V]`` logits are never built. Shapes: ``hidden`` ``[B, T, H]``;
    ``input_ids``, ``completion_mask``, ``predictor_positions`` ``[B, T]`` →
    ``[B, T]`` (fp32, or the hidden dtype when wider).
    """
    batch_idx, target_pos = torch.nonzero(completion_mask.bool(), as_tuple=True)
    selected = hidden[batch_idx, predictor_positions[batch_idx, target_pos]]
    targets = input_ids[batch_idx, target_pos]
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    pieces = [selective_log_softmax(lm_head(selected[start:start + chunk_size]),
                                    targets[start:start + chunk_size], chunk_size)
              for start in range(0, selected.shape[0], chunk_size)]
    values = torch.cat(pieces).to(dtype) if pieces else hidden.new_zeros(0, dtype=dtype)
    out = torch.zeros(input_ids.shape, dtype=dtype, device=hidden.device)
    return out.index_put((batch_idx, target_pos), values)
