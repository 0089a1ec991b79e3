"""A causal LM that returns per-token log-probs of completion tokens only.

Wrapping the model in one ``nn.Module`` whose ``forward`` does both the
backbone and the (chunked) LM head keeps distributed wrappers (DDP, FSDP)
working: the whole computation goes through their ``forward``. The LM head and
log-softmax run only at positions that predict a completion token, so no
``[B, T, V]`` tensor is built (see ``prefalign.ops.logprobs``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from prefalign.ops.logprobs import completion_logprobs


def base_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class CompletionLogprobModel(nn.Module):
    """``forward(input_ids, attention_mask, completion_mask) -> [B, T]`` log-probs.

    Entry ``[b, t]`` is ``log p(input_ids[b, t] | input_ids[b, :t])`` where
    ``completion_mask[b, t]`` is 1, and 0 elsewhere. ``position_ids`` may be
    given for packed rows (then ``attention_mask`` is None).
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    @property
    def config(self):
        return base_causal_lm(self.lm).config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                completion_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        causal_lm = base_causal_lm(self.lm)
        backbone = causal_lm.get_decoder()
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, use_cache=False).last_hidden_state
        return completion_logprobs(hidden, causal_lm.get_output_embeddings(), input_ids,
                                   completion_mask)

    def reference_context(self):
        """A context in which the model acts as its own frozen reference (LoRA disabled)."""
        disable = getattr(self.lm, "disable_adapter", None)
        return disable() if callable(disable) else contextlib.nullcontext()
