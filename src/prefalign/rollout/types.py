"""What a generation engine takes and returns: sampling settings and completions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample: ``num_samples`` completions per prompt of at most
    ``max_new_tokens`` tokens; ``temperature`` 0 means greedy (then every sample of a
    prompt is the same); ``top_k`` 0 and ``top_p`` 1 switch those filters off; a
    completion ends at the end-of-sequence token or the first stop string, but not
    before ``min_new_tokens`` (the end-of-sequence token is barred until then)."""

    num_samples: int = 1
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    min_new_tokens: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    """One sampled completion: its token ids (ending with the end-of-sequence token
    when it stopped there), its text, and why it ended: ``"eos"``, ``"stop"`` (a stop
    string, kept in both ids and text) or ``"length"`` (``max_new_tokens`` reached)."""

    token_ids: list[int]
    text: str
    finish: str


class GenerationEngine(Protocol):
    """Samples completions of tokenised prompts with the current policy weights."""

    name: str

    def generate(self, prompt_ids: list[list[int]], settings: SamplingSettings,
                 seed: int) -> list[list[Completion]]:
        """``settings.num_samples`` completions for each prompt, seeded by ``seed``."""

    def sync_weights(self, lm: torch.nn.Module) -> None:
        """Make the engine sample from ``lm``'s current weights."""
