"""Batched greedy (or sampled) generation for evaluation, with left padding."""

from __future__ import annotations

import torch

from prefalign.data.tokenize import render_prompt


@torch.no_grad()
def generate(lm: torch.nn.Module, tokenizer, prompts: list, *, max_new_tokens: int = 32,
             batch_size: int = 16, use_chat_template: bool = True,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
    """Completions (text after the prompt, special tokens removed) for each prompt."""
    was_training = lm.training
    lm.eval()
    device = next(lm.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts = [render_prompt(p, tokenizer, use_chat_template) for p in prompts]
    outputs: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, do_sample=do_sample)
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p)
            out = lm.generate(**enc, **kwargs)
            new_tokens = out[:, enc["input_ids"].shape[1]:]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        lm.train(was_training)
    return [o.strip() for o in outputs]
