"""The language model behind an agent: a local prefalign model, or an OpenAI-compatible
endpoint. Both take chat messages and return the reply text, greedy, cut at the first
stop string, with token counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Reply:
    """A model's reply: its text, token counts and seconds."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class ChatModel(Protocol):
    name: str

    def reply(self, messages: list[dict], stop: tuple[str, ...], max_new_tokens: int) -> Reply:
        """The assistant's next message (greedy), ending before the first stop string."""


def _cut(text: str, stop: tuple[str, ...]) -> str:
    ends = [text.find(s) for s in stop if s and s in text]
    return text[:min(ends)] if ends else text


class LocalModel:
    """Any prefalign model (``embedded``, a run directory, a saved model or adapter),
    generating with the model's chat template."""

    def __init__(self, spec: str, max_prompt_tokens: int = 1536):
        from prefalign.eval.policies import LoadedPolicy, resolve_policy

        self.name = spec
        self.policy = LoadedPolicy(resolve_policy(spec, spec), dtype="float32", batch_size=1)
        self.max_prompt_tokens = max_prompt_tokens

    def reply(self, messages: list[dict], stop: tuple[str, ...], max_new_tokens: int) -> Reply:
        from prefalign.rollout.types import SamplingSettings

        started = time.perf_counter()
        ids = self.policy.encode([{"prompt": messages}], self.max_prompt_tokens)
        settings = SamplingSettings(num_samples=1, max_new_tokens=max_new_tokens,
                                    temperature=0.0, stop=stop)
        completion = self.policy.sample(ids, settings, seed=0)[0][0]
        return Reply(_cut(completion.text, stop), len(ids[0]), len(completion.token_ids),
                     time.perf_counter() - started)


class EndpointModel:
    """An OpenAI-compatible chat endpoint (``http://host:port/v1``, optionally
    ``#model``), through the judge client: retries, timeouts, token usage."""

    def __init__(self, spec: str):
        from prefalign.judges.cache import JudgeStats
        from prefalign.judges.http_client import ChatClient

        url, _, model = spec.partition("#")
        self.name = spec
        self.client = ChatClient(url, model or None, stats=JudgeStats())

    def reply(self, messages: list[dict], stop: tuple[str, ...], max_new_tokens: int) -> Reply:
        started = time.perf_counter()
        answer = self.client.complete(messages, max_tokens=max_new_tokens, stop=list(stop))
        text = (answer.get("choices") or [{}])[0].get("message", {}).get("content") or ""
        usage = answer.get("usage") or {}
        return Reply(_cut(text, stop), int(usage.get("prompt_tokens") or 0),
                     int(usage.get("completion_tokens") or 0), time.perf_counter() - started)


def load_chat_model(spec: str) -> ChatModel:
    """``http(s)://...`` → :class:`EndpointModel`; anything else → :class:`LocalModel`."""
    if spec.startswith(("http://", "https://")):
        return EndpointModel(spec)
    return LocalModel(spec)
