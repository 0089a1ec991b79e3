"""One entry point for every data source a config can name.

A source is one of:

* ``builtin:NAME[?KEY=VALUE&...]`` or ``NAME:KEY=VALUE&...`` — records generated
  by the registered task ``NAME`` (``builtin:arithmetic?n=600&seed=0``,
  ``countdown:n=2000&seed=0&numbers=3``, ``minigrid:env=...&seeds=0-99``). The
  keys are the keyword parameters of the task's maker for the record kind, each
  value converted to the type of the parameter's default;
* a file or folder that a task reads (a GSM8K ``{"question", "answer"}`` file or a
  folder with ``train.jsonl``), for the kinds that task makes;
* anything else — a ``.jsonl``/``.json``/``.parquet``/``.csv`` file or ``hf:NAME`` —
  goes to ``prefalign.data.load``.

Every record is validated as its kind (``prefalign.data.schema``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from urllib.parse import parse_qsl

from prefalign.data.load import load_records
from prefalign.data.schema import Required, validate_records
from prefalign.errors import ConfigError, DataError
from prefalign.tasks.base import RecordMaker, Task, prompt_key
from prefalign.tasks.registry import TASKS, discover_tasks, get_task

BUILTIN = "builtin:"
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _named_task(source: str) -> tuple[Task, str] | None:
    """``(task, query)`` for ``builtin:NAME?QUERY`` and ``NAME:QUERY``, else ``None``."""
    if source.startswith(BUILTIN):
        name, _, query = source[len(BUILTIN):].partition("?")
        try:
            return get_task(name), query
        except ConfigError as error:
            raise DataError(str(error), file=source) from None
    name, colon, query = source.partition(":")
    discover_tasks()
    if colon and name in TASKS:
        return TASKS[name], query.removeprefix("?")
    return None


def source_task(source: str, kind: str = "prompt") -> Task | None:
    """The task a source names or that reads it, or ``None`` for a plain data file."""
    named = _named_task(source)
    if named is not None:
        return named[0]
    return next((task for task in TASKS.values() if kind in task.makers
                 and task.reads is not None and task.reads(source)), None)


def content_key(source: str, kind: str = "prompt") -> Callable[[dict], str]:
    """How records of ``source`` are told apart: its task's content key, else the prompt."""
    task = source_task(source, kind)
    return task.content_key if task is not None else prompt_key


def _maker(task: Task, kind: str, source: str) -> RecordMaker:
    if kind not in task.makers:
        raise DataError(f"task '{task.name}' has no {kind} records; it has: "
                        f"{', '.join(task.makers)}", file=source)
    return task.makers[kind]


def _convert(key: str, value: str, default: object, source: str) -> object:
    """``value`` as the type of ``default``, or a DataError naming the parameter."""
    if isinstance(default, bool):
        if value.lower() not in _TRUE + _FALSE:
            raise DataError(f"parameter '{key}' must be true or false, got '{value}'",
                            file=source)
        return value.lower() in _TRUE
    if default is None or isinstance(default, str):
        return value
    kind = type(default)
    try:
        return kind(value)
    except ValueError:
        expected = "an integer" if kind is int else "a number" if kind is float else kind.__name__
        raise DataError(f"parameter '{key}' must be {expected}, got '{value}'",
                        file=source) from None


def parse_parameters(maker: RecordMaker, query: str, source: str) -> dict:
    """The maker's keyword arguments from ``KEY=VALUE&...``, typed by their defaults (text
    for a parameter without one, which the query must then give)."""
    defaults = {name: None if parameter.default is inspect.Parameter.empty
                else parameter.default
                for name, parameter in inspect.signature(maker).parameters.items()}
    params = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in defaults:
            raise DataError(f"unknown parameter '{key}'; valid: {', '.join(defaults)}",
                            file=source)
        params[key] = _convert(key, value, defaults[key], source)
    missing = [name for name, parameter in inspect.signature(maker).parameters.items()
               if parameter.default is inspect.Parameter.empty and name not in params]
    if missing:
        raise DataError(f"parameter '{missing[0]}' is required", file=source)
    return params


def _make(maker: RecordMaker, params: dict, source: str) -> list[dict]:
    try:
        return maker(**params)
    except (ValueError, ConfigError) as error:
        raise DataError(str(error), file=source) from None


def load_source(source: str, kind: str, require: Required | None = None) -> list[dict]:
    """Validated records of ``kind`` from any source described in the module docstring;
    a record without a field of ``require`` (``{field: why}``) is a ``DataError``."""
    named = _named_task(source)
    if named is not None:
        task, query = named
        maker = _maker(task, kind, source)
        records = _make(maker, parse_parameters(maker, query, source), source)
    else:
        task = source_task(source, kind)
        if task is None:
            return load_records(source, kind, require)
        records = _make(_maker(task, kind, source), {"path": source}, source)
    return validate_records(records, kind, file=source, require=require)
