"""The training forward of the online stages: log-probs of sampled tokens (and values).

Inputs are the grouped layout of ``prefalign.rollout.batch``: ``P`` left-padded
prompts ``[P, Tp]`` and ``N = P·G`` right-padded completions ``[N, Tc]``, ``G``
per prompt. ``PolicyModel.forward`` returns ``(logps, values)``, both
``[N, Tc]`` and zero off the completion:

* ``logps[n, t] = log softmax(z / τ)[y_t]`` where ``z`` are the LM logits after
  ``prompt + y_<t`` and ``τ`` the sampling temperature (``logprob_temperature``:
  one rule for every log-prob of a run), so the ratio π_θ/π_old compares the
  distribution the tokens were actually drawn from; the LM head runs only at
  completion positions (``prefalign.ops.logprobs``), and under activation
  checkpointing its logits are recomputed in backward rather than kept;
* ``values[n, t] = w·h + b`` on the same hidden state — the PPO value of the
  state before token ``t`` (Ouyang et al. 2022's value head, here sharing the
  policy backbone) — or ``None`` without a value head.

Prefix sharing (exact). Each prompt runs through the backbone once, recording
its keys and values (``PromptCache``); the completions then run on top of the
prompt's keys and values repeated ``G`` times (a differentiable copy), so a group
costs ``Tp + G·Tc`` token positions instead of ``G·(Tp + Tc)``. Gradients flow
into the prompt positions through the cache exactly as in one long sequence.
Under activation checkpointing the completion pass keeps the sharing: its cache
only reads, so a layer recomputed in backward sees the same keys and values (the
prompt pass, ``P·Tp`` positions, runs without checkpointing, as its cache
records). With ``G = 1``, or a transformers version whose checkpointed layers
drop every cache, the rows are instead concatenated and run in one pass.
``reference_context()`` switches LoRA adapters off: inside it the model is its
own frozen starting point.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import DynamicCache

from prefalign.models.token_logprobs import base_causal_lm
from prefalign.ops.logprobs import completion_logprobs


class TemperedHead(nn.Module):
    """``head(h) / τ``: logits at sampling temperature τ."""

    def __init__(self, head: nn.Module, temperature: float):
        super().__init__()
        self.head, self.temperature = head, temperature

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden)
        return logits if self.temperature == 1.0 else logits / self.temperature


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: ``cumsum(mask) − 1`` (0 on padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


class PromptCache(DynamicCache):
    """A key/value cache that records a prompt pass, then serves the prompt read-only.

    Before ``share(group)`` it is a plain ``DynamicCache`` that also keeps each
    layer's prompt keys and values; after it, ``update`` returns the prompt's
    (repeated ``group`` times along the batch) concatenated with the new keys and
    values and stores nothing, so running a layer twice gives the same result.
    """

    def __init__(self, config):
        super().__init__(config=config)
        self._prompt: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._shared: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self._shared is None:
            self._prompt[layer_idx] = (key_states, value_states)
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        keys, values = self._shared[layer_idx]
        return (torch.cat([keys, key_states], dim=-2),
                torch.cat([values, value_states], dim=-2))

    def share(self, group: int) -> None:
        """From now on serve the recorded prompt, each row repeated ``group`` times."""
        self._shared = {index: (keys.repeat_interleave(group, 0),
                                values.repeat_interleave(group, 0))
                        for index, (keys, values) in self._prompt.items()}


_UNSET = object()


def _checkpointed_layers(decoder: nn.Module) -> list[nn.Module]:
    """The layers of ``decoder`` that activation checkpointing currently wraps."""
    return [module for module in decoder.modules()
            if module is not decoder and getattr(module, "gradient_checkpointing", False)
            and hasattr(module, "_gradient_checkpointing_func")]


@contextlib.contextmanager
def _layer_flags(layers: list[nn.Module], **flags):
    """Set attributes on each of ``layers`` for the duration, then restore them."""
    saved = [{name: layer.__dict__.get(name, _UNSET) for name in flags} for layer in layers]
    for layer in layers:
        for name, value in flags.items():
            setattr(layer, name, value)
    try:
        yield
    finally:
        for layer, before in zip(layers, saved):
            for name, value in before.items():
                if value is _UNSET:
                    delattr(layer, name)
                else:
                    setattr(layer, name, value)


class PolicyModel(nn.Module):
    """A causal LM (plain or with LoRA) scored on completion tokens; see the module docstring."""

    def __init__(self, lm: nn.Module, temperature: float = 1.0, value_head: bool = False):
        super().__init__()
        self.lm = lm
        self.temperature = temperature
        self.value_head: nn.Linear | None = None
        if value_head:
            config = base_causal_lm(lm).config
            hidden = getattr(config, "hidden_size", None) or config.n_embd
            device = next(lm.parameters()).device
            self.value_head = nn.Linear(hidden, 1, dtype=torch.float32, device=device)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    @property
    def config(self):
        return base_causal_lm(self.lm).config

    def _predicting_hidden(self, decoder: nn.Module, layers: list[nn.Module], prompt_ids,
                           prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        """``[N, Tc, H]``: the hidden state that predicts each completion token;
        ``layers``: those activation checkpointing wraps in this forward."""
        prompts, length = prompt_ids.shape
        group = completion_ids.shape[0] // prompts
        if group == 1 or any(not hasattr(layer, "_can_checkpoint_with_cache")
                             for layer in layers):
            ids = torch.cat([prompt_ids.repeat_interleave(group, 0), completion_ids], dim=1)
            mask = torch.cat([prompt_mask.repeat_interleave(group, 0), completion_mask], dim=1)
            hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                             use_cache=False).last_hidden_state
            return hidden[:, length - 1:length - 1 + completion_ids.shape[1]]
        cache = PromptCache(self.config)
        with _layer_flags(layers, gradient_checkpointing=False):
            out = decoder(input_ids=prompt_ids, attention_mask=prompt_mask,
                          position_ids=_positions(prompt_mask), past_key_values=cache,
                          use_cache=True)
        cache.share(group)
        last_prompt = out.last_hidden_state[:, -1:].repeat_interleave(group, 0)
        prompt_lengths = prompt_mask.sum(-1).repeat_interleave(group)
        positions = prompt_lengths[:, None] + torch.arange(completion_ids.shape[1],
                                                           device=completion_ids.device)
        mask = torch.cat([prompt_mask.repeat_interleave(group, 0), completion_mask], dim=1)
        with _layer_flags(layers, _can_checkpoint_with_cache=True):
            hidden = decoder(input_ids=completion_ids, attention_mask=mask,
                             position_ids=positions, past_key_values=cache,
                             use_cache=True).last_hidden_state
        return torch.cat([last_prompt, hidden[:, :-1]], dim=1)

    def forward(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                completion_ids: torch.Tensor,
                completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        causal_lm = base_causal_lm(self.lm)
        decoder = causal_lm.get_decoder()
        layers = _checkpointed_layers(decoder) if self.training else []
        hidden = self._predicting_hidden(decoder, layers, prompt_ids, prompt_mask,
                                         completion_ids, completion_mask)
        # completion_logprobs scores token t from the hidden state at t − 1: shift by one.
        rows = completion_ids.shape[0]
        shifted = torch.cat([hidden, hidden[:, -1:]], dim=1)
        ids = torch.cat([completion_ids[:, :1], completion_ids], dim=1)
        mask = torch.cat([completion_mask.new_zeros(rows, 1), completion_mask], dim=1)
        head = TemperedHead(causal_lm.get_output_embeddings(), self.temperature)
        logps = completion_logprobs(shifted, head, ids, mask,
                                    recompute_logits=bool(layers))[:, 1:]
        if self.value_head is None:
            return logps, None
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return logps, values * completion_mask.to(values.dtype)

    def reference_context(self):
        """A context in which the model acts as its own frozen reference (LoRA disabled)."""
        disable = getattr(self.lm, "disable_adapter", None)
        return disable() if callable(disable) else contextlib.nullcontext()


def logprob_temperature(cfg) -> float:
    """The temperature of every log-prob of an online run: the rollout's, ``τ``.

    The policy, the old policy, the reference, the in-training KL and the held-out
    KL of ``eval policy`` all score ``log softmax(z/τ)``, the distribution the
    tokens were sampled from; so at step 0 policy and reference agree exactly and
    both KL figures estimate the same ``KL(π_τ ‖ π_ref,τ)``.
    """
    return cfg.rollout.temperature


def unwrap(model: nn.Module) -> PolicyModel:
    """The ``PolicyModel`` inside a distributed wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model
