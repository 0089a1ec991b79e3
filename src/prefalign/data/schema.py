"""Record kinds and their validation.

A data file holds rows of one *kind*; validation turns each raw row into a
normalised record (a plain ``dict``) or raises a ``DataError`` naming the file,
the line and the field. Text is either a string or a list of chat messages
``[{"role", "content"}]``; normalisation never rewrites text, it only checks it
and reshapes rows into one canonical form per kind:

=============  ==============================================================
kind           normalised record
=============  ==============================================================
``sft``        ``{"prompt", "completion"}``; a ``{"messages"}`` row becomes
               ``prompt = messages[:-1]``, ``completion = [messages[-1]]``
``preference`` ``{"prompt", "chosen", "rejected"}`` (+ ``margin``, + optional
               ``reference_sample``: a reply to the prompt sampled from the
               reference model, which the ``xpo`` loss needs); a row with
               no prompt whose chosen/rejected are whole conversations gets
               their shared message prefix as its prompt
``unpaired``   ``{"prompt", "completion", "label": bool}``
``prompt``     ``{"prompt", ...}`` with every other field kept (verifiers)
``rated``      ``{"prompt", "response", "score": float}``
``steps``      ``{"prompt", "steps": [text, ...], "labels": [0|1, ...],
               "final_correct": bool}``: a solution split into reasoning steps,
               each labelled sound (1) or not (0); ``labels`` and
               ``final_correct`` may be absent when the record is only scored;
               other fields (``kind``, ``first_wrong``, ``problem``) are kept
=============  ==============================================================

Completions (``completion``, ``chosen``, ``rejected``, ``reference_sample``,
``response``) that are message lists hold assistant messages only. An optional
``metadata`` object is kept on every kind. Records carry no line numbers:
``validate_records`` returns them in input order, and the line of record ``i``
is the ``i``-th line number given by ``prefalign.data.load.read_rows``.

Files without types (CSV) deliver every cell as text, so numeric fields accept a
string holding a number and ``label`` accepts ``"true"/"false"/"1"/"0"``. A
``null`` value counts as a missing field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from prefalign.errors import ConfigError, DataError

RECORD_KINDS = ("sft", "preference", "unpaired", "prompt", "rated", "steps")
CHAT_ROLES = ("system", "user", "assistant", "tool")
REFERENCE_SAMPLE = "reference_sample"
_LABEL_TEXT = {"true": True, "false": False, "1": True, "0": False}


class UnusableRecord(DataError):
    """A well-formed record that cannot train (an empty reply, identical pair...).

    Callers that process whole data sets catch it, skip the record and count
    ``reason``; called on a single record it reports like any ``DataError``.
    """


class _Where:
    """The file and line being validated, so every error can name them."""

    def __init__(self, file: str | None, line: int | None):
        self.file, self.line = file, line

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, file=self.file, line=self.line, field=field)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _require(row: Mapping[str, Any], name: str, where: _Where) -> Any:
    value = row.get(name)
    if value is None:
        present = ", ".join(sorted(row)) or "none"
        raise where.error(f"missing required field (fields present: {present})", name)
    return value


def _check_text(value: Any, name: str, where: _Where) -> str:
    if not isinstance(value, str):
        raise where.error(f"expected text, got {_type_name(value)}", name)
    if not value.strip():
        raise where.error("text is empty", name)
    return value


def _check_messages(value: list, name: str, where: _Where, assistant_only: bool) -> list[dict]:
    if not value:
        raise where.error("message list is empty", name)
    messages = []
    for index, message in enumerate(value):
        field = f"{name}[{index}]"
        if not isinstance(message, Mapping):
            raise where.error(f"expected a message object, got {_type_name(message)}", field)
        for key in ("role", "content"):
            if key not in message:
                raise where.error(f"message has no '{key}'", field)
        role = message["role"]
        if role not in CHAT_ROLES:
            raise where.error(f"unknown role {role!r}; expected one of {', '.join(CHAT_ROLES)}",
                              f"{field}.role")
        if assistant_only and role != "assistant":
            raise where.error(f"a completion holds assistant messages only, got role {role!r}",
                              f"{field}.role")
        _check_text(message["content"], f"{field}.content", where)
        messages.append(dict(message))
    return messages


def _check_conversation(value: Any, name: str, where: _Where,
                        assistant_only: bool = False) -> str | list[dict]:
    """Text or a list of chat messages; raises a located ``DataError`` otherwise."""
    if isinstance(value, list):
        return _check_messages(value, name, where, assistant_only)
    if isinstance(value, str):
        return _check_text(value, name, where)
    raise where.error(f"expected text or a list of chat messages, got {_type_name(value)}", name)


def _check_number(value: Any, name: str, where: _Where) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise where.error(f"expected a number, got text {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"expected a number, got {_type_name(value)}", name)
    if not math.isfinite(value):
        raise where.error(f"expected a finite number, got {value}", name)
    return float(value)


def _check_label(value: Any, name: str, where: _Where) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABEL_TEXT:
        return _LABEL_TEXT[value.strip().lower()]
    raise where.error(f"expected a boolean label (true/false or 1/0), got {value!r}", name)


def _with_metadata(record: dict, row: Mapping[str, Any], where: _Where) -> dict:
    metadata = row.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise where.error(f"expected an object, got {_type_name(metadata)}", "metadata")
        record["metadata"] = dict(metadata)
    return record


def _validate_sft(row: Mapping[str, Any], where: _Where) -> dict:
    if row.get("messages") is not None and row.get("prompt") is None:
        messages = row["messages"]
        if not isinstance(messages, list):
            raise where.error(f"expected a list of chat messages, got {_type_name(messages)}",
                              "messages")
        messages = _check_messages(messages, "messages", where, assistant_only=False)
        if messages[-1]["role"] != "assistant":
            raise where.error("the last message must have role 'assistant' (the completion)",
                              f"messages[{len(messages) - 1}].role")
        if len(messages) < 2:
            raise where.error("needs at least one message before the assistant reply", "messages")
        record = {"prompt": messages[:-1], "completion": messages[-1:]}
    else:
        record = {
            "prompt": _check_conversation(_require(row, "prompt", where), "prompt", where),
            "completion": _check_conversation(_require(row, "completion", where), "completion",
                                              where, assistant_only=True),
        }
    return _with_metadata(record, row, where)


def _shared_prompt_length(chosen: list[dict], rejected: list[dict], where: _Where) -> int:
    """Length of the prompt two conversations share.

    It is the longest common message prefix, shortened until it ends with a
    non-assistant turn, so that both remainders start with the reply.
    """
    shared = 0
    while (shared < min(len(chosen), len(rejected))
           and chosen[shared] == rejected[shared]):
        shared += 1
    while shared > 0 and chosen[shared - 1]["role"] == "assistant":
        shared -= 1
    if shared == 0:
        raise where.error("chosen and rejected share no prompt messages; give a 'prompt' field",
                          "prompt")
    return shared


def _reply_after(conversation: list[dict], shared: int, name: str, where: _Where) -> list[dict]:
    """The assistant messages after the shared prompt of an implicit-prompt pair."""
    reply = conversation[shared:]
    if not reply:
        raise where.error("conversation has no reply after the shared prompt", name)
    for index, message in enumerate(reply, start=shared):
        if message["role"] != "assistant":
            raise where.error("chosen and rejected must share every message before the final "
                              f"reply, but role {message['role']!r} follows the point where they "
                              "differ", f"{name}[{index}].role")
    return reply


def _validate_preference(row: Mapping[str, Any], where: _Where) -> dict:
    chosen_raw = _require(row, "chosen", where)
    rejected_raw = _require(row, "rejected", where)
    if row.get("prompt") is None:
        if not (isinstance(chosen_raw, list) and isinstance(rejected_raw, list)):
            hint = ""
            if isinstance(chosen_raw, str) and chosen_raw.lstrip().startswith("Human:"):
                hint = " (raw hh-rlhf transcripts: convert them with `prefalign data convert-hh`)"
            raise where.error("missing required field; without it chosen and rejected must be "
                              "conversations that share their prompt messages" + hint, "prompt")
        chosen = _check_messages(chosen_raw, "chosen", where, assistant_only=False)
        rejected = _check_messages(rejected_raw, "rejected", where, assistant_only=False)
        shared = _shared_prompt_length(chosen, rejected, where)
        prompt = chosen[:shared]
        chosen = _reply_after(chosen, shared, "chosen", where)
        rejected = _reply_after(rejected, shared, "rejected", where)
    else:
        prompt = _check_conversation(row["prompt"], "prompt", where)
        chosen = _check_conversation(chosen_raw, "chosen", where, assistant_only=True)
        rejected = _check_conversation(rejected_raw, "rejected", where, assistant_only=True)
    record: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if row.get("margin") is not None:
        record["margin"] = _check_number(row["margin"], "margin", where)
    if row.get(REFERENCE_SAMPLE) is not None:
        record[REFERENCE_SAMPLE] = _check_conversation(row[REFERENCE_SAMPLE], REFERENCE_SAMPLE,
                                                       where, assistant_only=True)
    return _with_metadata(record, row, where)


def _validate_unpaired(row: Mapping[str, Any], where: _Where) -> dict:
    record = {
        "prompt": _check_conversation(_require(row, "prompt", where), "prompt", where),
        "completion": _check_conversation(_require(row, "completion", where), "completion",
                                          where, assistant_only=True),
        "label": _check_label(_require(row, "label", where), "label", where),
    }
    return _with_metadata(record, row, where)


def _validate_prompt(row: Mapping[str, Any], where: _Where) -> dict:
    record = dict(row)
    record["prompt"] = _check_conversation(_require(row, "prompt", where), "prompt", where)
    return record


def _validate_rated(row: Mapping[str, Any], where: _Where) -> dict:
    record = {
        "prompt": _check_conversation(_require(row, "prompt", where), "prompt", where),
        "response": _check_conversation(_require(row, "response", where), "response", where,
                                        assistant_only=True),
        "score": _check_number(_require(row, "score", where), "score", where),
    }
    return _with_metadata(record, row, where)


def _validate_steps(row: Mapping[str, Any], where: _Where) -> dict:
    steps = _require(row, "steps", where)
    if not isinstance(steps, list) or not steps:
        raise where.error(f"expected a non-empty list of step texts, got {_type_name(steps)}",
                          "steps")
    record: dict[str, Any] = {
        **row,
        "prompt": _check_conversation(_require(row, "prompt", where), "prompt", where),
        "steps": [_check_text(step, f"steps[{i}]", where) for i, step in enumerate(steps)]}
    labels = row.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != len(steps):
            raise where.error(f"expected a list of {len(steps)} labels, one per step, got "
                              f"{_type_name(labels)}" + (f" of {len(labels)}"
                                                         if isinstance(labels, list) else ""),
                              "labels")
        record["labels"] = [int(_check_label(v, f"labels[{i}]", where))
                            for i, v in enumerate(labels)]
    if row.get("final_correct") is not None:
        record["final_correct"] = _check_label(row["final_correct"], "final_correct", where)
    return _with_metadata(record, row, where)


_VALIDATORS = {
    "sft": _validate_sft,
    "preference": _validate_preference,
    "unpaired": _validate_unpaired,
    "prompt": _validate_prompt,
    "rated": _validate_rated,
    "steps": _validate_steps,
}


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a record kind, else raise ``ConfigError`` listing them."""
    if kind not in _VALIDATORS:
        raise ConfigError(f"unknown record kind {kind!r}; expected one of "
                          f"{', '.join(RECORD_KINDS)}")
    return kind


Required = Mapping[str, str]
"""Optional fields a caller needs present, each with why: ``{"reference_sample": "..."}``."""


def validate_record(row: Any, kind: str, file: str | None = None,
                    line: int | None = None, require: Required | None = None) -> dict:
    """Validate one raw row of ``kind`` and return its normalised record.

    Raises ``DataError`` (with ``file``, ``line`` and the offending field) for a
    missing field, a wrong type, empty text or a malformed chat message, and for a
    record without a field of ``require`` (the message says why it is needed).
    """
    validator = _VALIDATORS[check_kind(kind)]
    where = _Where(file, line)
    if not isinstance(row, Mapping):
        raise where.error(f"expected a JSON object, got {_type_name(row)}")
    record = validator(row, where)
    for name, reason in (require or {}).items():
        if record.get(name) is None:
            present = ", ".join(sorted(record)) or "none"
            raise where.error(f"missing; {reason} (fields present: {present})", name)
    return record


def validate_records(rows: Iterable[tuple[int, Any] | Mapping[str, Any]], kind: str,
                     file: str | None = None, require: Required | None = None) -> list[dict]:
    """Validate many rows and return their records in the same order.

    ``rows`` are the ``(line, row)`` pairs of ``read_rows``, or bare rows, which
    are numbered 1, 2, ... in order. ``require``: as in :func:`validate_record`.
    """
    check_kind(kind)
    records = []
    for index, item in enumerate(rows):
        if isinstance(item, tuple):
            line, row = item
        else:
            line, row = index + 1, item
        records.append(validate_record(row, kind, file=file, line=line, require=require))
    return records
