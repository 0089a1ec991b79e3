"""The judge contract: pointwise and pairwise judges, verdicts, and ``build_judge``.

A *pointwise* judge scores each (prompt, response) on its own: reward models
(prefalign's and Hugging Face ``AutoModelForSequenceClassification`` ones) and
task verifiers. A *pairwise* judge compares two responses to one prompt: a
language model asked by a written rubric which answer is better, locally or
through an OpenAI-compatible server.

Pairwise judges ask in both orders (position swap, Zheng et al. 2023, "Judging
LLM-as-a-Judge with MT-Bench and Chatbot Arena"): ``first_order`` is the
preference for response A when A is shown first, ``swapped_order`` the
preference for the same response A when it is shown second. A judge without
position bias gives the same value in both; ``p_first`` is their mean. As in
Zheng et al.'s conservative rule, a pair whose two orders disagree (one above
½, the other below) is a tie, and so is a pair judged exactly ½ in both orders.

Judges are built from spec strings, ``KIND:ARGUMENT``::

    rm:runs/rm/final          prefalign reward model directory
    hf-rm:ID_OR_PATH          AutoModelForSequenceClassification reward model
    verifier:arithmetic       a task's verifier (records must carry its fields)
    lm:embedded               pairwise LM judge, local model, log-probs of "A"/"B"
    http:URL[#model]          pairwise LM judge through an OpenAI-compatible server

A new kind is one factory registered with ``register_judge_kind``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from prefalign.errors import ConfigError


@runtime_checkable
class PointwiseJudge(Protocol):
    """Scores responses one at a time; higher is better.

    ``required_fields`` are the record fields ``score`` reads (a verifier's
    answer); ``records`` is then required, one per prompt.
    """

    name: str
    required_fields: tuple[str, ...]

    def score(self, prompts: list[str], responses: list[str],
              records: list[dict] | None = None) -> list[float]: ...


@dataclass
class PairwiseVerdict:
    """One pairwise judgment of responses A (``first``) and B, asked in both orders.

    ``first_order``: P(A better) with A shown first; ``swapped_order``: P(A better)
    with A shown second; ``p_first`` = their mean; ``tie``: the orders disagree or
    both are exactly ½; ``raw``: the judge's outputs, first order then swapped.
    """

    p_first: float
    tie: bool
    first_order: float
    swapped_order: float
    raw: list[str] = field(default_factory=list)

    @property
    def position_flip(self) -> bool:
        """True when the verdict changes with the order (position bias on this pair)."""
        return _side(self.first_order) != _side(self.swapped_order)

    @classmethod
    def from_orders(cls, first_order: float, swapped_order: float,
                    raw: list[str] | None = None) -> PairwiseVerdict:
        """Combine the two orders into one verdict (mean preference, tie rule above)."""
        disagree = (first_order - 0.5) * (swapped_order - 0.5) < 0
        neutral = first_order == 0.5 and swapped_order == 0.5
        return cls(p_first=(first_order + swapped_order) / 2, tie=disagree or neutral,
                   first_order=first_order, swapped_order=swapped_order, raw=list(raw or []))


def _side(p: float) -> int:
    """-1, 0 or 1: which response a preference ``p`` for the first one favours."""
    return (p > 0.5) - (p < 0.5)


@runtime_checkable
class PairwiseJudge(Protocol):
    """Compares ``responses_a[i]`` with ``responses_b[i]`` for ``prompts[i]``."""

    name: str

    def compare(self, prompts: list[str], responses_a: list[str],
                responses_b: list[str]) -> list[PairwiseVerdict]: ...


Judge = PointwiseJudge | PairwiseJudge
JudgeFactory = Callable[..., Any]

# kind -> "module:function" (imported on first use, so building a verifier judge
# loads no model code) or a factory registered at run time.
JUDGE_KINDS: dict[str, str | JudgeFactory] = {
    "rm": "prefalign.judges.reward_model:build_rm_judge",
    "hf-rm": "prefalign.judges.hf_reward_model:build_hf_rm_judge",
    "verifier": "prefalign.judges.verifier:build_verifier_judge",
    "lm": "prefalign.judges.local_lm:build_local_lm_judge",
    "http": "prefalign.judges.http_judge:build_http_judge",
}


def register_judge_kind(kind: str, factory: JudgeFactory) -> None:
    """Add a judge kind: ``factory(argument, **options)`` returns a judge."""
    if kind in JUDGE_KINDS and JUDGE_KINDS[kind] is not factory:
        raise ValueError(f"judge kind '{kind}' is already registered")
    JUDGE_KINDS[kind] = factory


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``KIND:ARGUMENT``; a bare ``http(s)://`` URL is the ``http`` kind."""
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        return "http", spec
    kind, sep, argument = spec.partition(":")
    if not sep or kind not in JUDGE_KINDS:
        close = difflib.get_close_matches(kind, list(JUDGE_KINDS), n=1)
        hint = f"did you mean '{close[0]}:'? " if close and sep else ""
        raise ConfigError(f"unknown judge '{spec}'; {hint}a judge is KIND:ARGUMENT with KIND "
                          f"one of: {', '.join(sorted(JUDGE_KINDS))}")
    if not argument:
        raise ConfigError(f"judge '{spec}' names no {kind} argument (expected {kind}:...)")
    return kind, argument


def build_judge(spec: str, **options: Any) -> Judge:
    """Build the judge a spec string names (see the module docstring).

    ``options`` go to the kind's factory: ``cache_dir`` (on-disk cache, all kinds),
    ``rubric`` (pairwise kinds), ``concurrency``/``timeout``/``retries`` (``http``),
    ``device``/``batch_size`` (model kinds).
    """
    kind, argument = parse_spec(spec)
    factory = JUDGE_KINDS[kind]
    if isinstance(factory, str):
        module, _, function = factory.partition(":")
        factory = getattr(importlib.import_module(module), function)
    return factory(argument, **options)


def is_pairwise(judge: Judge) -> bool:
    """True for a pairwise judge (it has ``compare``), False for a pointwise one."""
    return hasattr(judge, "compare")
