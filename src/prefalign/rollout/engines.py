"""Choosing a generation engine: vLLM when asked for (or, with ``auto``, when vLLM
and a GPU are present), transformers otherwise."""

from __future__ import annotations

import torch

from prefalign.errors import ConfigError
from prefalign.rollout.hf_engine import TransformersEngine
from prefalign.rollout.types import GenerationEngine
from prefalign.rollout.vllm_engine import VLLMEngine, vllm_usable


def build_engine(kind: str, lm: torch.nn.Module, tokenizer, *, model_source: str | None = None,
                 batch_size: int = 64, gpu_memory_utilization: float = 0.3,
                 seed: int = 0) -> GenerationEngine:
    """The engine for ``kind`` (``auto``, ``transformers`` or ``vllm``).

    vLLM starts from ``model_source`` (a local directory or hub id of the
    starting weights) and is synced to ``lm`` at once.
    """
    use_vllm = kind == "vllm" or (kind == "auto" and vllm_usable() and model_source is not None)
    if not use_vllm:
        return TransformersEngine(lm, tokenizer, batch_size=batch_size)
    if model_source is None:
        raise ConfigError("the vLLM engine needs the starting model's source (a directory or "
                          "hub id)")
    engine = VLLMEngine(model_source, tokenizer,
                        gpu_memory_utilization=gpu_memory_utilization, seed=seed)
    engine.sync_weights(lm)
    return engine
