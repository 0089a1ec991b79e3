"""``http:URL[#model]``: the pairwise judge through an OpenAI-compatible server.

Each rubric question is one chat completion of at most one token at
temperature 0. With ``top_logprobs`` in the answer, the preference is read from
the answer tokens as in ``local_lm`` (``P = exp ℓ_A / (exp ℓ_A + exp ℓ_B)``; a
letter missing from the top list gets the smallest listed log-prob, an upper
bound); without them, from the text ("A" → 1, "B" → 0, else ½). Requests run
``concurrency`` at a time.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefalign.judges.cache import JudgeStats
from prefalign.judges.http_client import ChatClient
from prefalign.judges.pairwise import PairwiseLMJudge
from prefalign.judges.rubric import parse_letter


def preference_from_answer(answer: dict) -> tuple[float, str]:
    """(P(first better), raw text) from one chat-completion answer."""
    choice = (answer.get("choices") or [{}])[0]
    text = str((choice.get("message") or {}).get("content") or "")
    content = (choice.get("logprobs") or {}).get("content") or []
    top = (content[0].get("top_logprobs") or []) if content else []
    by_letter: dict[str, list[float]] = {"A": [], "B": []}
    for entry in top:
        letter = str(entry.get("token", "")).strip().upper()
        if letter in by_letter:
            by_letter[letter].append(float(entry["logprob"]))
    if not by_letter["A"] and not by_letter["B"]:
        return parse_letter(text), text
    floor = min(float(e["logprob"]) for e in top)
    log_a, log_b = (_logsumexp(by_letter[k] or [floor]) for k in ("A", "B"))
    return 1.0 / (1.0 + math.exp(log_b - log_a)), text


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class ChatBackend:
    """Answers rendered questions through a ``ChatClient``, ``concurrency`` at a time."""

    def __init__(self, client: ChatClient, concurrency: int = 4):
        self.client, self.concurrency = client, max(1, concurrency)

    def __call__(self, questions: list[str]) -> list[tuple[float, str]]:
        def ask(question: str) -> tuple[float, str]:
            answer = self.client.chat([{"role": "user", "content": question}])
            return preference_from_answer(answer)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(ask, questions))


def build_http_judge(target: str, *, rubric: str | Path | None = None, concurrency: int = 4,
                     timeout: float = 60.0, retries: int = 3, backoff: float = 0.5,
                     cache: bool = True, cache_dir: str | Path | None = None,
                     **_: object) -> PairwiseLMJudge:
    """``http:BASE_URL[#model]``, e.g. ``http:http://127.0.0.1:8080#smollm2``."""
    url, _, model = target.partition("#")
    stats = JudgeStats()
    client = ChatClient(url, model or None, stats=stats, timeout=timeout, retries=retries,
                        backoff=backoff)
    return PairwiseLMJudge(f"http:{target}", f"http:{client.root}#{model}",
                           ChatBackend(client, concurrency), stats, rubric=rubric,
                           cache=cache, cache_dir=cache_dir)
