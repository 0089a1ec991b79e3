"""Programmatic rewards: a length gate and a hollow-opener detector.

Both come in a ``binary`` form (0 or 1) and a ``continuous`` form (in [0, 1]),
chosen with ``mode``. They need no model and no row fields, so they are cheap
checks to combine with a reward model in a composite (``composite.py``): a
policy optimised against a reward model alone learns to write long replies
and to open with flattery, because many reward models score both higher.
"""

from __future__ import annotations

import re
from typing import Literal

import torch

from prefalign.rewards.base import RewardFunction, register_reward

Mode = Literal["binary", "continuous"]
MODES = ("binary", "continuous")

HOLLOW_OPENERS: tuple[str, ...] = (
    (r"(?:that|this|it)(?:'s| is) (?:a|an|such a|such an|a really|a very) "
     r"(?:great|good|excellent|fantastic|wonderful|fascinating|interesting|insightful|"
     r"thoughtful|brilliant|amazing) question"),
    (r"(?:what )?(?:a|an) (?:great|good|excellent|fantastic|wonderful|fascinating|"
     r"interesting|insightful|thoughtful|brilliant|amazing) question"),
    r"(?:great|good|excellent|fantastic|wonderful) question",
    r"i (?:love|really like) (?:this|that|your) question",
    r"thank(?:s| you) (?:so much )?for (?:asking|your question|the question)",
    r"i(?:'d| would) be (?:happy|glad|delighted) to help(?: you)?(?: with (?:that|this))?",
    r"absolutely",
    r"certainly",
    r"of course",
    r"sure thing",
    r"definitely",
    r"great",
)
_OPENER = re.compile(r"\s*(?:" + "|".join(HOLLOW_OPENERS) + r")\s*(?:[!.,:;]+|—|-|$)\s*",
                     re.IGNORECASE)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def word_count(text: str) -> int:
    """Whitespace-separated words in ``text``."""
    return len(text.split())


def count_hollow_openers(text: str) -> int:
    """How many hollow phrases are stacked at the start of ``text`` before any content.

    A phrase counts only when punctuation or the end of the text follows it
    ("Absolutely! Here is..." counts; "Absolutely nothing changes" does not).
    Curly apostrophes are read as straight ones.
    """
    remaining = text.replace("\u2019", "'")
    count = 0
    while remaining:
        match = _OPENER.match(remaining)
        if match is None or match.end() == 0:
            break
        count += 1
        remaining = remaining[match.end():]
    return count


class LengthGate:
    """Rewards completions that stay within ``max_words`` words.

    binary: ``r = 1[n ≤ L]``; continuous: ``r = min(1, L / n)`` (1 for an empty
    reply), the share of the reply that fits the budget. ``n`` is the word
    count of the completion, ``L = max_words``. Output ``[N]`` float32.
    """

    required_fields: tuple[str, ...] = ()

    def __init__(self, max_words: int = 200, mode: Mode = "binary"):
        if max_words < 1:
            raise ValueError(f"max_words must be positive, got {max_words}")
        _check_mode(mode)
        self.max_words, self.mode = max_words, mode
        self.name = "length_gate"

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor:
        counts = torch.tensor([word_count(c) for c in completions], dtype=torch.float32)
        if self.mode == "binary":
            return (counts <= self.max_words).to(torch.float32)
        return torch.clamp(self.max_words / counts.clamp(min=1.0), max=1.0)


class HollowOpener:
    """Detects content-free openers ("That's a great question!", "Absolutely!", ...).

    With ``k`` hollow phrases stacked at the start of a completion
    (``count_hollow_openers``): binary ``r = 1[k ≥ 1]``; continuous
    ``r = 1 − 2^(−k)`` (0.5 for one, 0.75 for two, ...). A detector, so give it
    a negative weight in a composite. Output ``[N]`` float32.
    """

    required_fields: tuple[str, ...] = ()

    def __init__(self, mode: Mode = "binary"):
        _check_mode(mode)
        self.mode = mode
        self.name = "hollow_opener"

    def __call__(self, prompts: list[str], completions: list[str],
                 rows: list[dict]) -> torch.Tensor:
        counts = torch.tensor([count_hollow_openers(c) for c in completions],
                              dtype=torch.float32)
        if self.mode == "binary":
            return (counts >= 1).to(torch.float32)
        return 1.0 - torch.pow(2.0, -counts)


@register_reward("length_gate")
def length_gate(max_words: int = 200, mode: Mode = "binary") -> RewardFunction:
    """``LengthGate(max_words, mode)``."""
    return LengthGate(max_words=max_words, mode=mode)


@register_reward("hollow_opener")
def hollow_opener(mode: Mode = "binary") -> RewardFunction:
    """``HollowOpener(mode)``."""
    return HollowOpener(mode=mode)
