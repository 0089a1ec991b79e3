"""A tiny randomly initialised chat model, for smoke tests and CI.

It needs no download: a byte-level BPE tokenizer is trained in milliseconds on a
fixed corpus (so it is identical every time), given the ChatML template the
embedded SmolLM2 model uses, and paired with a 2-layer Llama of hidden size 32.
``save_tiny_model(path)`` writes both as an ordinary transformers checkpoint, so
every code path that loads a model from a local directory works on it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is 12 + 7? The answer is 19.",
    "Human: How do I bake bread? Assistant: Mix flour, water, yeast and salt, then bake.",
    "user assistant system You are a helpful assistant. Please answer the question.",
    "goto(yellow key) pickup(blue ball) open(red door) drop() goto(goal) toggle",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 + - * / = ( ) , . ! ? : ; ' \" # <> []",
    "I am sorry, I cannot help with that. Sure! Here is a short poem about the sea.",
]


def tiny_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE tokenizer with ChatML special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_model(vocab_size: int, seed: int = 0, hidden_size: int = 32,
               num_layers: int = 2) -> LlamaForCausalLM:
    """A randomly initialised Llama with the given vocabulary, in float32."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def save_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny tokenizer + model pair to ``path`` and return it."""
    path = Path(path)
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
