"""Name lookups with one clear error: the bad name, the closest valid one, all valid ones."""

from __future__ import annotations

import difflib
from typing import TypeVar

from prefalign.errors import ConfigError

T = TypeVar("T")


def lookup(kind: str, name: str, registry: dict[str, T]) -> T:
    """``registry[name]``, or a ``ConfigError`` naming the valid choices."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown {kind} '{name}'{hint}; valid: {', '.join(registry)}")
