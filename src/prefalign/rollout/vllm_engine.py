"""Generation with vLLM, for a CUDA machine that has it installed.

The engine keeps its own copy of the weights, so after every optimizer update
the trainer pushes the policy's current weights into it (``sync_weights``); a
LoRA policy is merged in place, read out under the base model's parameter
names, and unmerged. Sampling mirrors ``TransformersEngine``: prompts are
given as token ids, ``n`` samples each, the same temperature, top-p, top-k,
stop strings (kept in the output) and a per-call seed. Completions then go
through the same ``finish_completion`` cut as the transformers engine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import torch

from prefalign.errors import ConfigError
from prefalign.rollout.finish import finish_completion
from prefalign.rollout.hf_engine import eos_token_ids
from prefalign.rollout.types import Completion, SamplingSettings


def vllm_usable() -> bool:
    """True when vLLM is importable and a CUDA GPU is present."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def _base_names(lm: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` pairs of ``lm``'s weights under the plain transformers names
    (peft's ``base_model.model.`` prefix and ``.base_layer`` infix removed, adapters skipped)."""
    for name, tensor in lm.state_dict().items():
        if "lora_" in name:
            continue
        clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
        yield clean, tensor


class VLLMEngine:
    """A ``GenerationEngine`` backed by ``vllm.LLM`` on the local GPU."""

    name = "vllm"

    def __init__(self, model_source: str, tokenizer, *, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.3, seed: int = 0):
        if not vllm_usable():
            raise ConfigError("rollout.engine=vllm needs the vllm package and a CUDA GPU; "
                              "use rollout.engine=transformers")
        from vllm import LLM

        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(tokenizer)
        self.llm = LLM(model=model_source, dtype=dtype, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization,
                       enable_prefix_caching=True)

    def _model_runner_model(self):
        engine = self.llm.llm_engine
        executor = getattr(engine, "model_executor", None)
        worker = getattr(executor, "driver_worker", None)
        return getattr(getattr(worker, "model_runner", None), "model", None)

    @torch.no_grad()
    def sync_weights(self, lm: torch.nn.Module) -> None:
        """Copy ``lm``'s current (LoRA-merged) weights into the vLLM model."""
        merge = getattr(lm, "merge_adapter", None)
        if callable(merge):
            merge()
        try:
            weights = [(name, tensor.detach()) for name, tensor in _base_names(lm)]
            model = self._model_runner_model()
            if model is not None:
                model.load_weights(weights=weights)
            else:
                self.llm.apply_model(lambda inner: inner.load_weights(weights=weights))
            reset = getattr(self.llm, "reset_prefix_cache", None)
            if callable(reset):
                reset()
        finally:
            unmerge = getattr(lm, "unmerge_adapter", None)
            if callable(unmerge):
                unmerge()

    def generate(self, prompt_ids: list[list[int]], settings: SamplingSettings,
                 seed: int) -> list[list[Completion]]:
        """``settings.num_samples`` completions per prompt (greedy: one, repeated)."""
        from vllm import SamplingParams, TokensPrompt

        rows = 1 if settings.greedy else settings.num_samples
        params = SamplingParams(
            n=rows, temperature=settings.temperature, top_p=settings.top_p,
            top_k=settings.top_k if settings.top_k > 0 else -1,
            max_tokens=settings.max_new_tokens, min_tokens=settings.min_new_tokens, stop=list(settings.stop) or None,
            include_stop_str_in_output=True, seed=seed)
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for output in outputs:
            done = [finish_completion(list(sample.token_ids), self.tokenizer, self.eos_ids,
                                      settings.stop) for sample in output.outputs]
            results.append(done * settings.num_samples if settings.greedy else done)
        return results
