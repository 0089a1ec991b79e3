"""Save a trained model (adapters or full weights) and its tokenizer, atomically.

Everything is written into a temporary directory next to ``out_dir`` and moved
into place at the end, so a killed save never leaves a half-written model that a
later load would trust. An existing ``out_dir`` is replaced only if it looks
like a saved model (or is empty); anything else is refused rather than deleted.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from torch import nn

from prefalign.errors import ModelError
from prefalign.models.embedded import make_staging_dir, replace_dir
from prefalign.models.heads import HEAD_CONFIG, ScalarHeadModel

_MODEL_MARKERS = ("config.json", "adapter_config.json", HEAD_CONFIG)


def _is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _is_quantized(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return bool(getattr(model, "is_loaded_in_4bit", False)
                or getattr(model, "is_loaded_in_8bit", False)
                or getattr(config, "quantization_config", None))


def _check_replaceable(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ModelError(f"cannot save a model to {out_dir}: it is a file")
    if any(out_dir.iterdir()) and not any((out_dir / m).is_file() for m in _MODEL_MARKERS):
        raise ModelError(f"refusing to replace {out_dir}: it is not empty and holds no saved "
                         f"model; choose another output directory")


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain transformers model with the LoRA updates folded into its weights
    (``W + (alpha / r) B A``); ``model`` itself keeps its adapters."""
    if _is_quantized(model):
        raise ModelError("cannot merge LoRA adapters into 4-bit weights; "
                         "save the adapters instead (merge_lora=False)")
    return copy.deepcopy(model).merge_and_unload()


def save_model(model: nn.Module, tokenizer, out_dir: str | Path, merge_lora: bool = False,
               scalar_head: ScalarHeadModel | None = None) -> Path:
    """Save ``model`` and ``tokenizer`` to ``out_dir`` and return it.

    A peft model saves only its adapters (``adapter_config.json`` naming the base
    model, plus adapter weights) unless ``merge_lora`` is set, in which case a
    merged copy is saved as full safetensors weights that plain
    ``AutoModelForCausalLM.from_pretrained`` loads. A ``scalar_head`` (reward or
    value head) is saved into the same directory.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    staging = make_staging_dir(out_dir)
    try:
        if _is_peft(model) and merge_lora:
            merged_copy(model).save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if scalar_head is not None:
            scalar_head.save(staging)
        replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
