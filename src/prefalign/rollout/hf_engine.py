"""Generation with transformers ``generate``: batched, KV-cached, seeded.

Prompts arrive as token ids (exactly the ids the training forward will see)
and are left-padded into batches of ``batch_size`` prompts. With several
samples per prompt, each prompt is prefilled once (all but its last token) and
its key/value cache repeated ``num_samples`` times before ``generate`` continues
from it, so the prompt is not recomputed per sample. Sampling uses an explicit
``GenerationConfig`` — temperature, top-p, top-k — so nothing is inherited
silently from the model's own generation defaults. Stop strings are matched in
the generated text only (never across the prompt boundary), by the same rule
that ``finish_completion`` later uses to cut the completion. The torch RNG is
forked and seeded per call: the same weights, prompts and seed give the same
completions on the same device.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from prefalign.rollout.batch import left_pad
from prefalign.rollout.finish import finish_completion, first_stop
from prefalign.rollout.types import Completion, SamplingSettings


def eos_token_ids(tokenizer, lm: torch.nn.Module | None = None) -> list[int]:
    """End-of-sequence ids: the tokenizer's, plus any the model's generation config adds."""
    ids = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    config = getattr(lm, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    for value in ([extra] if isinstance(extra, int) else list(extra or [])):
        if int(value) not in ids:
            ids.append(int(value))
    return ids


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Fork the torch RNG (CPU, and this CUDA device), seed it, restore it afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class StopOnText(StoppingCriteria):
    """Finishes a row once its generated text (after ``prompt_width``) contains a stop string."""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_width: int):
        self.tokenizer, self.stop, self.prompt_width = tokenizer, stop, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:],
                                            skip_special_tokens=True)
        return torch.tensor([first_stop(text, self.stop) is not None for text in texts],
                            dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    """A ``GenerationEngine`` on the training model itself (no copy, no weight sync)."""

    name = "transformers"

    def __init__(self, lm: torch.nn.Module, tokenizer, batch_size: int = 64):
        self.lm, self.tokenizer, self.batch_size = lm, tokenizer, batch_size
        self.eos_ids = eos_token_ids(tokenizer, lm)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else self.eos_ids[0]

    def sync_weights(self, lm: torch.nn.Module) -> None:
        """Generation runs on ``lm`` directly."""
        self.lm = lm

    def _config(self, settings: SamplingSettings) -> GenerationConfig:
        sampling = {} if settings.greedy else {
            "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
        return GenerationConfig(
            max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.min_new_tokens,
            do_sample=not settings.greedy,
            pad_token_id=self.pad_id, eos_token_id=self.eos_ids, **sampling)

    def _generate_chunk(self, chunk: list[list[int]], rows_per_prompt: int,
                        config: GenerationConfig, stop: tuple[str, ...]) -> list[list[int]]:
        device = next(self.lm.parameters()).device
        input_ids, mask = (t.to(device) for t in left_pad(chunk, self.pad_id))
        extra = {}
        if stop:
            extra["stopping_criteria"] = StoppingCriteriaList(
                [StopOnText(self.tokenizer, stop, input_ids.shape[1])])
        expanded_ids = input_ids.repeat_interleave(rows_per_prompt, 0)
        expanded_mask = mask.repeat_interleave(rows_per_prompt, 0)
        if rows_per_prompt > 1 and input_ids.shape[1] > 1:
            head_mask = mask[:, :-1]
            prefill = self.lm(input_ids=input_ids[:, :-1], attention_mask=head_mask,
                              position_ids=(head_mask.cumsum(-1) - 1).clamp(min=0),
                              use_cache=True, logits_to_keep=1)
            cache = prefill.past_key_values
            cache.batch_repeat_interleave(rows_per_prompt)
            extra["past_key_values"] = cache
        out = self.lm.generate(input_ids=expanded_ids, attention_mask=expanded_mask,
                               generation_config=config, **extra)
        return out[:, input_ids.shape[1]:].tolist()

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], settings: SamplingSettings,
                 seed: int) -> list[list[Completion]]:
        """``settings.num_samples`` completions per prompt (greedy: one, repeated)."""
        device = next(self.lm.parameters()).device
        rows_per_prompt = 1 if settings.greedy else settings.num_samples
        config = self._config(settings)
        was_training = self.lm.training
        self.lm.eval()
        results: list[list[Completion]] = []
        try:
            with seeded(seed, device):
                for start in range(0, len(prompt_ids), self.batch_size):
                    chunk = prompt_ids[start:start + self.batch_size]
                    new_tokens = self._generate_chunk(chunk, rows_per_prompt, config,
                                                      settings.stop)
                    for p in range(len(chunk)):
                        rows = new_tokens[p * rows_per_prompt:(p + 1) * rows_per_prompt]
                        done = [finish_completion(r, self.tokenizer, self.eos_ids,
                                                  settings.stop) for r in rows]
                        results.append(done * settings.num_samples if settings.greedy
                                       else done)
        finally:
            self.lm.train(was_training)
        return results
