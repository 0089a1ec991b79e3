"""Rollouts: the policy generates completions for prompts.

Two engines behind one interface (``types.GenerationEngine``): transformers
``generate`` on the training model (default; batched with a KV cache), and
vLLM on a CUDA machine that has it. ``build_engine`` picks one; ``batch.py``
packs prompts and completions into the tensors of the training forward, whose
log-probs of the sampled tokens are the ones every ratio uses.
"""

from prefalign.rollout.batch import encode_prompts, pack_groups
from prefalign.rollout.engines import build_engine
from prefalign.rollout.finish import finish_completion
from prefalign.rollout.hf_engine import TransformersEngine
from prefalign.rollout.types import Completion, GenerationEngine, SamplingSettings
from prefalign.rollout.vllm_engine import VLLMEngine, vllm_usable

__all__ = [
    "Completion", "GenerationEngine", "SamplingSettings", "TransformersEngine", "VLLMEngine",
    "build_engine", "encode_prompts", "finish_completion", "pack_groups", "vllm_usable",
]
