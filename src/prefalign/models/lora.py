"""LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

A frozen weight ``W [out, in]`` gains a trainable low-rank update:
``h = W x + (alpha / r) * B A x`` with ``A [r, in]`` (random init) and
``B [out, r]`` (zero init), so training starts from the unchanged model and
only ``r * (in + out)`` parameters per adapted layer are learned. peft does the
wrapping; this module decides which layers to adapt.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from prefalign.config.lora import LoraSettings
from prefalign.errors import ModelError

TargetScope = Literal["attention", "all-linear"]

# Attention projections, then MLP projections, per transformers `model_type`.
# Dotted names ("attn.c_proj") match a module whose name ends with them.
_LLAMA_LIKE = (["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"])
_KNOWN_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    **{name: _LLAMA_LIKE for name in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2",
        "smollm3", "granite", "cohere")},
    "mixtral": (["q_proj", "k_proj", "v_proj", "o_proj"], []),
    "phi3": (["qkv_proj", "o_proj"], ["gate_up_proj", "down_proj"]),
    "phi": (["q_proj", "k_proj", "v_proj", "dense"], ["fc1", "fc2"]),
    "opt": (["q_proj", "k_proj", "v_proj", "out_proj"], ["fc1", "fc2"]),
    "gpt2": (["c_attn", "attn.c_proj"], ["c_fc", "mlp.c_proj"]),
    "gpt_bigcode": (["c_attn", "attn.c_proj"], ["c_fc", "mlp.c_proj"]),
    "gpt_neox": (["query_key_value", "dense"], ["dense_h_to_4h", "dense_4h_to_h"]),
    "falcon": (["query_key_value", "dense"], ["dense_h_to_4h", "dense_4h_to_h"]),
    "bloom": (["query_key_value", "self_attention.dense"], ["dense_h_to_4h", "dense_4h_to_h"]),
    "gptj": (["q_proj", "k_proj", "v_proj", "out_proj"], ["fc_in", "fc_out"]),
}


def _is_linear(module: nn.Module) -> bool:
    """nn.Linear, or the transposed Conv1D that GPT-2 style models use."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def linear_module_names(model: nn.Module) -> list[str]:
    """Dotted names of every linear layer except the output (LM) head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name, module in model.named_modules()
            if _is_linear(module) and module is not head]


def _matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def find_target_modules(model: nn.Module, scope: TargetScope = "attention") -> list[str]:
    """LoRA target names for ``model``: its attention projections (``scope="attention"``)
    or all its projections (``"all-linear"``).

    Known architectures use their conventional names; any other model falls back
    to the short names of every linear layer except the output head.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    available = linear_module_names(model)
    if model_type in _KNOWN_TARGETS:
        attention, mlp = _KNOWN_TARGETS[model_type]
        wanted = attention if scope == "attention" else attention + mlp
        present = [t for t in wanted if any(_matches(name, t) for name in available)]
        if present:
            return present
    return sorted({name.rsplit(".", 1)[-1] for name in available})


def resolve_target_modules(model: nn.Module, settings: LoraSettings) -> list[str]:
    """The concrete target list for ``settings``; every named target must exist."""
    if settings.target_modules == "auto":
        return find_target_modules(model, "attention")
    if settings.target_modules == "all-linear":
        return find_target_modules(model, "all-linear")
    available = linear_module_names(model)
    missing = [t for t in settings.target_modules if not any(_matches(n, t) for n in available)]
    if missing or not settings.target_modules:
        short_names = sorted({name.rsplit(".", 1)[-1] for name in available})
        raise ModelError(
            f"LoRA target modules {missing or '[]'} match no linear layer of this model; "
            f"available: {', '.join(short_names)}")
    return list(settings.target_modules)


def apply_lora(model: nn.Module, settings: LoraSettings):
    """Wrap ``model`` in a peft ``PeftModel`` with fresh LoRA adapters (``B = 0``).

    Only the adapter weights are trainable afterwards; the output of the
    wrapped model equals the original until training moves ``B`` off zero.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise ModelError("this model already has LoRA adapters; merge them first "
                         "(save_model(..., merge_lora=True)) or train the existing ones")
    targets = resolve_target_modules(model, settings)
    uses_conv1d = any(type(module).__name__ == "Conv1D" and
                      any(_matches(name, t) for t in targets)
                      for name, module in model.named_modules())
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        fan_in_fan_out=uses_conv1d,
    )
    return get_peft_model(model, config)
