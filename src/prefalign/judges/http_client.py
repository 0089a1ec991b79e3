"""A small client for OpenAI-compatible chat-completion servers (stdlib ``urllib``).

Works with llama.cpp's server (``llama-cpp-python[server]``), vLLM's
``vllm serve`` and any server speaking ``POST /v1/chat/completions``. It asks
for ``logprobs``/``top_logprobs`` of the first answer token; a server that
rejects them (HTTP 400) is asked again without, and its text answer is used.
Connection failures, timeouts and 5xx/429 answers are retried with exponential
backoff; when the retries are spent the error is one line naming the URL.
``PREFALIGN_JUDGE_API_KEY``, when set, is sent as a bearer token.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any

from prefalign.errors import ConfigError, PrefalignError
from prefalign.judges.cache import JudgeStats
from prefalign.judges.retry import RetryableError, with_retries


class JudgeServerError(PrefalignError):
    """The judge server could not be reached or kept failing."""


def api_root(base_url: str) -> str:
    """``http://host:port/v1`` from a base URL with or without ``/v1``."""
    root = base_url.rstrip("/")
    if root.endswith("/chat/completions"):
        root = root[: -len("/chat/completions")]
    return root if root.endswith("/v1") else root + "/v1"


class ChatClient:
    """``chat(messages)`` → the server's JSON answer; ``stats`` counts requests and tokens."""

    def __init__(self, base_url: str, model: str | None = None, *, stats: JudgeStats,
                 timeout: float = 60.0, retries: int = 3, backoff: float = 0.5):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"judge server URL must start with http:// or https://, "
                              f"got '{base_url}'")
        self.root, self.model, self.stats = api_root(base_url), model, stats
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.logprobs_offered = True

    def chat(self, messages: list[dict], *, max_tokens: int = 1, top_logprobs: int = 10
             ) -> dict[str, Any]:
        """One chat completion (temperature 0), with logprobs when the server offers them."""
        body: dict[str, Any] = {"model": self.model_name(), "messages": messages,
                                "max_tokens": max_tokens, "temperature": 0.0}
        if self.logprobs_offered:
            try:
                return self._completion({**body, "logprobs": True,
                                         "top_logprobs": top_logprobs})
            except _Rejected:
                self.logprobs_offered = False
        return self._completion(body)

    def complete(self, messages: list[dict], *, max_tokens: int, stop: list[str] | None = None
                 ) -> dict[str, Any]:
        """One greedy chat completion of up to ``max_tokens``, ending at a ``stop`` string."""
        body: dict[str, Any] = {"model": self.model_name(), "messages": messages,
                                "max_tokens": max_tokens, "temperature": 0.0}
        if stop:
            body["stop"] = stop[:4]  # the OpenAI API takes at most four
        return self._completion(body)

    def model_name(self) -> str:
        """The ``#model`` of the spec, else the first model the server lists."""
        if self.model is None:
            listed = self._request("GET", "/models", None).get("data") or [{}]
            self.model = str(listed[0].get("id") or "default")
        return self.model

    def _completion(self, body: dict) -> dict:
        answer = self._request("POST", "/chat/completions", body)
        usage = answer.get("usage") or {}
        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        return answer

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        url = self.root + path

        def once() -> dict:
            self.stats.requests += 1
            return _send(method, url, body, self.timeout)

        def count_retry(attempt: int, err: RetryableError) -> None:
            self.stats.retries += 1

        try:
            return with_retries(once, attempts=self.retries, backoff=self.backoff,
                                on_retry=count_retry)
        except RetryableError as err:
            raise JudgeServerError(f"judge server {url} failed after {self.retries} "
                                   f"attempt(s): {err}") from None


class _Rejected(Exception):
    """HTTP 400 to a request with logprobs: retry without them."""


def _send(method: str, url: str, body: dict | None, timeout: float) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if os.environ.get("PREFALIGN_JUDGE_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['PREFALIGN_JUDGE_API_KEY']}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")[:200].replace("\n", " ")
        if err.code == 429 or err.code >= 500:
            raise RetryableError(f"HTTP {err.code}: {detail}") from None
        if err.code == 400 and body is not None and "logprobs" in body:
            raise _Rejected() from None
        raise JudgeServerError(f"judge server {url} answered HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise RetryableError(f"{type(err).__name__}: {reason}") from None
    except json.JSONDecodeError as err:
        raise JudgeServerError(f"judge server {url} sent no JSON: {err}") from None
