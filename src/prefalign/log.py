"""Progress messages for the person running a command: stderr, flushed at once."""

from __future__ import annotations

import sys


def say(stage: str, message: str) -> None:
    """Print ``[stage] message`` to stderr immediately (visible when piped to a file)."""
    print(f"[{stage}] {message}", file=sys.stderr, flush=True)
