"""One entry point for every data source a config can name.

``builtin:NAME[?n=N&seed=S]`` generates a built-in task's records in code; any
other source (a file path or ``hf:NAME``) goes to ``prefalign.data.load``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from prefalign.data.load import load_records
from prefalign.data.schema import validate_records
from prefalign.errors import DataError
from prefalign.tasks import arithmetic

BUILTIN: dict[str, dict[str, Callable[..., list[dict]]]] = {
    "arithmetic": {
        "sft": arithmetic.sft_records,
        "preference": arithmetic.preference_records,
        "prompt": arithmetic.prompt_records,
    },
}
BUILTIN_DEFAULT_SIZE = 600


def _builtin(source: str, kind: str) -> list[dict]:
    spec = source[len("builtin:"):]
    name, _, query = spec.partition("?")
    if name not in BUILTIN:
        raise DataError(f"unknown built-in dataset '{name}'; available: {', '.join(BUILTIN)}",
                        file=source)
    makers = BUILTIN[name]
    if kind not in makers:
        raise DataError(f"built-in dataset '{name}' has no {kind} records; it has: "
                        f"{', '.join(makers)}", file=source)
    params = {"n": BUILTIN_DEFAULT_SIZE, "seed": 0}
    for key, value in parse_qsl(query):
        if key not in params:
            raise DataError(f"unknown parameter '{key}'; valid: n, seed", file=source)
        if not value.lstrip("-").isdigit():
            raise DataError(f"parameter '{key}' must be an integer, got '{value}'", file=source)
        params[key] = int(value)
    return validate_records(makers[kind](**params), kind, file=source)


def load_source(source: str, kind: str) -> list[dict]:
    """Validated records of ``kind`` from any supported source."""
    if source.startswith("builtin:"):
        return _builtin(source, kind)
    return load_records(source, kind)
