"""One entry point for every data source a config can name.

``builtin:NAME[?n=N&seed=S&...]`` generates a built-in task's records in code;
the query names keyword arguments of the task's record maker (for arithmetic
also ``split=train|test|all`` and, for pairs, ``verbose_share``), converted to
the type of their default. Any other source (a file path or ``hf:NAME``) goes
to ``prefalign.data.load``.
"""

from __future__ import annotations

import inspect
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
    defaults = {param: spec.default
                for param, spec in inspect.signature(makers[kind]).parameters.items()}
    defaults["n"] = BUILTIN_DEFAULT_SIZE
    params = {}
    for key, value in parse_qsl(query):
        if key not in defaults:
            raise DataError(f"unknown parameter '{key}'; valid: {', '.join(defaults)}", file=source)
        params[key] = _parameter(key, value, type(defaults[key]), source)
    try:
        records = makers[kind](**{**defaults, **params})
    except ValueError as error:
        raise DataError(str(error), file=source) from None
    return validate_records(records, kind, file=source)


def _parameter(key: str, value: str, kind: type, source: str):
    """``value`` as the type of the parameter's default, or a DataError naming it."""
    if kind is str:
        return value
    try:
        return kind(value)
    except ValueError:
        raise DataError(f"parameter '{key}' must be {'an integer' if kind is int else 'a number'},"
                        f" got '{value}'", file=source) from None


def load_source(source: str, kind: str) -> list[dict]:
    """Validated records of ``kind`` from any supported source."""
    if source.startswith("builtin:"):
        return _builtin(source, kind)
    return load_records(source, kind)
