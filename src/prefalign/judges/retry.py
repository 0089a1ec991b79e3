"""Retries with exponential backoff for judge requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class RetryableError(Exception):
    """A failure worth retrying (connection refused, timeout, server error 5xx)."""


def with_retries(call: Callable[[], T], *, attempts: int, backoff: float,
                 on_retry: Callable[[int, RetryableError], None] | None = None) -> T:
    """Run ``call``; on ``RetryableError`` wait ``backoff · 2^k`` seconds (k = 0, 1, …)
    and try again, ``attempts`` times in all; the last error propagates."""
    for attempt in range(attempts):
        try:
            return call()
        except RetryableError as err:
            if attempt == attempts - 1:
                raise
            if on_retry is not None:
                on_retry(attempt + 1, err)
            time.sleep(backoff * 2 ** attempt)
    raise ValueError("attempts must be at least 1")
