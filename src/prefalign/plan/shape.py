"""The numbers of a decoder-only transformer that memory depends on.

A model is a hub id, a local directory (its ``config.json`` is read; the
weights are never loaded), one of prefalign's short names, or a set of
architecture numbers. Parameter counts follow the Llama layout (Touvron et al.
2023, "LLaMA: Open and Efficient Foundation Language Models"), which most
current open models share:

* embeddings ``V·h`` (and an untied LM head, another ``V·h``);
* per layer: attention ``h·(n_q·d) + 2·h·(n_kv·d) + (n_q·d)·h`` (q, k, v, o
  without biases; grouped-query attention has ``n_kv < n_q``), a gated MLP
  ``3·h·f`` (gate, up, down) and two RMSNorm weights ``2·h``;
* a final norm ``h``.

For LLaMA-7B (h=4096, 32 layers, f=11008, V=32000, untied) this gives
6,738,415,616 parameters, the "6.74B" of the paper. When a config is read, the
exact count comes from building the model on the meta device, so other layouts
(biases, GPT-2's fused projections) are counted right too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from prefalign.errors import ConfigError, ModelError

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION_NAMES = LINEAR_NAMES[:4]


@dataclass(frozen=True)
class ModelShape:
    """Architecture numbers: ``h`` hidden, ``L`` layers, ``n_q``/``n_kv`` heads of size
    ``d``, ``f`` MLP width, ``V`` vocabulary."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = False
    name: str = "custom"
    declared_params: int | None = None

    def __post_init__(self) -> None:
        for field in ("hidden", "layers", "heads", "kv_heads", "head_dim", "intermediate",
                      "vocab"):
            if getattr(self, field) <= 0:
                raise ConfigError(f"model {field} must be positive, got {getattr(self, field)}")
        if self.heads % self.kv_heads:
            raise ConfigError(f"{self.heads} attention heads cannot be grouped over "
                              f"{self.kv_heads} key/value heads")

    @property
    def q_width(self) -> int:
        """``n_q·d``: the width of queries and of the attention output."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """``n_kv·d``: the width of keys and of values."""
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(in, out)`` of each projection in one decoder layer."""
        h, f = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_width), "k_proj": (h, self.kv_width),
                "v_proj": (h, self.kv_width), "o_proj": (self.q_width, h),
                "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}

    @property
    def linear_params_per_layer(self) -> int:
        return sum(i * o for i, o in self.linear_shapes().values())

    @property
    def layer_params(self) -> int:
        """Projections plus the two norm weights of one decoder layer."""
        return self.linear_params_per_layer + 2 * self.hidden

    @property
    def edge_params(self) -> int:
        """Everything outside the decoder layers: embeddings, final norm, LM head."""
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.vocab * self.hidden + self.hidden + head

    @property
    def architecture_params(self) -> int:
        return self.layers * self.layer_params + self.edge_params

    @property
    def params(self) -> int:
        """Total parameters: the declared count when one was given, else the formula."""
        return self.declared_params or self.architecture_params

    @property
    def quantizable_params(self) -> int:
        """Parameters inside decoder-layer projections (what 4-bit QLoRA quantizes)."""
        return self.layers * self.linear_params_per_layer

    def lora_params(self, rank: int, targets: str) -> int:
        """Adapter parameters: ``r·(in + out)`` per adapted projection per layer."""
        names = ATTENTION_NAMES if targets == "attention" else LINEAR_NAMES
        shapes = self.linear_shapes()
        return self.layers * sum(rank * (shapes[n][0] + shapes[n][1]) for n in names)

    def describe(self) -> str:
        heads = (f"{self.heads} heads" if self.kv_heads == self.heads
                 else f"{self.heads} heads / {self.kv_heads} kv")
        return (f"hidden {self.hidden}, {self.layers} layers, {heads} of {self.head_dim}, "
                f"ffn {self.intermediate}, vocab {self.vocab}"
                f"{', tied embeddings' if self.tied_embeddings else ''}")


def llama_shape(*, hidden: int, layers: int, vocab: int, heads: int | None = None,
                kv_heads: int | None = None, intermediate: int | None = None,
                head_dim: int | None = None, tied_embeddings: bool = False,
                params: float | None = None, name: str = "custom") -> ModelShape:
    """A Llama-shaped model from its numbers; missing ones get Llama's conventions.

    ``heads`` defaults to ``h/128``, ``kv_heads`` to ``heads``, ``head_dim`` to
    ``h/heads`` and ``intermediate`` to Llama's ``256·⌈(8h/3)/256⌉``. A given
    ``params`` overrides the formula's total (for layouts the formula misses).
    """
    heads = heads or max(1, hidden // 128)
    kv_heads = kv_heads or heads
    head_dim = head_dim or hidden // heads
    intermediate = intermediate or 256 * math.ceil(8 * hidden / 3 / 256)
    return ModelShape(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                      head_dim=head_dim, intermediate=intermediate, vocab=vocab,
                      tied_embeddings=tied_embeddings, name=name,
                      declared_params=int(params) if params else None)


def shape_from_config(config, name: str = "custom", params: int | None = None) -> ModelShape:
    """Read the shape from a transformers config (``get_text_config()`` for multimodal)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(text, "hidden_size", None)
    layers = getattr(text, "num_hidden_layers", None)
    vocab = getattr(text, "vocab_size", None)
    if not (hidden and layers and vocab):
        raise ModelError(f"the config of '{name}' lacks hidden_size, num_hidden_layers or "
                         f"vocab_size; give the architecture numbers instead")
    heads = getattr(text, "num_attention_heads", None) or max(1, hidden // 128)
    intermediate = (getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None)
                    or 4 * hidden)
    return ModelShape(
        hidden=hidden, layers=layers, heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or hidden // heads,
        intermediate=intermediate, vocab=vocab,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        name=name, declared_params=params)


def load_shape(name_or_path: str) -> ModelShape:
    """The shape of a named model from its config alone (no weights are read).

    ``embedded``/``tiny``, a local model or adapter directory, or a hub id. A
    directory without ``config.json`` and an unreachable hub id are
    ``ModelError``s.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from prefalign.models.load import (
        adapter_base_name,
        is_adapter_dir,
        require_model_dir,
        resolve_model_source,
    )

    source = resolve_model_source(name_or_path)
    while is_adapter_dir(source):
        source = resolve_model_source(adapter_base_name(source))
    require_model_dir(source)
    try:
        config = AutoConfig.from_pretrained(source)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"could not read the config of '{name_or_path}': {first}") from None
    params = sum(p.numel() for p in skeleton.parameters())
    return shape_from_config(config, name=name_or_path, params=params)


def with_declared_params(shape: ModelShape, params: float | None) -> ModelShape:
    return replace(shape, declared_params=int(params)) if params else shape
