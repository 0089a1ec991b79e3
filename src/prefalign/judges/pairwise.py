"""The pairwise language-model judge: a rubric, both orders, a cache.

Each pair is asked twice, A then B and B then A (position swap, Zheng et al.
2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", §3.3). A
backend answers one rendered question with P(the response shown first is
better): from the log-probabilities of the answer tokens when it has them,

    P(first) = exp ℓ_A / (exp ℓ_A + exp ℓ_B),

or from its text answer ("A" → 1, "B" → 0, else ½). With ``q₁`` the answer for
(A, B) and ``q₂`` for (B, A), the verdict has ``first_order = q₁``,
``swapped_order = 1 − q₂`` and ``p_first = (q₁ + 1 − q₂) / 2``. Each ordered
question is cached on its own, so a swapped re-ask is also a cache hit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefalign.judges.base import PairwiseVerdict
from prefalign.judges.cache import JudgeCache, JudgeStats, default_cache_dir, text_hash
from prefalign.judges.rubric import read_rubric, render

# A backend answers rendered questions: [(P(first better), raw output), ...].
Backend = Callable[[list[str]], list[tuple[float, str]]]


class PairwiseLMJudge:
    """A pairwise judge from a backend, a rubric and a cache (see the module docstring)."""

    def __init__(self, name: str, fingerprint: str, backend: Backend, stats: JudgeStats, *,
                 rubric: str | Path | None = None, cache: bool = True,
                 cache_dir: str | Path | None = None):
        self.name, self.stats, self.backend = name, stats, backend
        self.rubric = read_rubric(rubric)
        directory = (cache_dir or default_cache_dir()) if cache else None
        self.cache = JudgeCache(text_hash(fingerprint, self.rubric), stats, directory)

    def compare(self, prompts: list, responses_a: list, responses_b: list
                ) -> list[PairwiseVerdict]:
        n = len(prompts)
        if not n == len(responses_a) == len(responses_b):
            raise ValueError("prompts, responses_a and responses_b differ in length")
        items = [(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]
        items += [(p, b, a) for p, a, b in zip(prompts, responses_a, responses_b)]
        answers = self.cache.get_or_compute(items, self._ask)
        return [PairwiseVerdict.from_orders(answers[i][0], 1.0 - answers[n + i][0],
                                            [answers[i][1], answers[n + i][1]])
                for i in range(n)]

    def _ask(self, items: list[tuple]) -> list[list]:
        questions = [render(self.rubric, p, first, second) for p, first, second in items]
        return [[float(p), raw] for p, raw in self.backend(questions)]
