"""Reading data files into numbered rows, and writing records back.

Sources are local files — ``.jsonl``, ``.json`` (a list of objects, or
``{"data": [...]}``), ``.parquet``, ``.csv`` — or Hugging Face datasets named
``hf:NAME``, ``hf:NAME:SPLIT`` or ``hf:NAME/CONFIG:SPLIT`` (``NAME`` may itself
be ``ORG/NAME``: with more than one ``/`` the last segment is the config; the
split defaults to ``train``). Every row keeps a 1-based number for error
messages: the line for JSONL, the position for JSON arrays, Parquet and Hub
datasets, the data row (header excluded) for CSV.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefalign.data.schema import Required, validate_records
from prefalign.errors import DataError

HF_PREFIX = "hf:"
SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")

Rows = list[tuple[int, dict[str, Any]]]


def _object_rows(items: Iterable[Any], file: str) -> Rows:
    rows = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise DataError(f"expected a JSON object, got {type(item).__name__}",
                            file=file, line=number)
        rows.append((number, item))
    return rows


def _read_jsonl(path: Path) -> Rows:
    file, rows = str(path), []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(f"invalid JSON: {error.msg} (column {error.colno})",
                                file=file, line=number) from None
            if not isinstance(item, dict):
                raise DataError(f"expected a JSON object, got {type(item).__name__}",
                                file=file, line=number)
            rows.append((number, item))
    return rows


def _read_json(path: Path) -> Rows:
    file = str(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"invalid JSON: {error.msg} (column {error.colno})",
                        file=file, line=error.lineno) from None
    if isinstance(content, dict) and isinstance(content.get("data"), list):
        content = content["data"]
    if not isinstance(content, list):
        raise DataError('expected a list of objects or {"data": [...]}', file=file)
    return _object_rows(content, file)


def _read_csv(path: Path) -> Rows:
    """CSV rows as text; an empty cell means the field is absent."""
    file, rows = str(path), []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=1):
            if None in row:
                raise DataError("row has more cells than the header", file=file, line=number)
            rows.append((number, {key: value for key, value in row.items()
                                  if value not in ("", None)}))
    return rows


def _read_parquet(path: Path) -> Rows:
    from pyarrow import parquet

    try:
        table = parquet.read_table(path)
    except Exception as error:  # noqa: BLE001 -- pyarrow raises many types for a bad file
        raise DataError(f"cannot read Parquet: {error}".splitlines()[0], file=str(path)) from None
    return _object_rows(table.to_pylist(), str(path))


def parse_hf_source(source: str) -> tuple[str, str | None, str]:
    """Split ``hf:NAME[/CONFIG][:SPLIT]`` into ``(name, config, split)``."""
    spec = source[len(HF_PREFIX):]
    name, _, split = spec.partition(":")
    config = None
    if name.count("/") > 1:
        name, config = name.rsplit("/", 1)
    if not name or (config is not None and not config):
        raise DataError("expected hf:NAME, hf:NAME:SPLIT or hf:NAME/CONFIG:SPLIT", file=source)
    return name, config, split or "train"


def _read_hf(source: str) -> Rows:
    name, config, split = parse_hf_source(source)
    try:
        from datasets import load_dataset

        dataset = load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 -- network, auth, missing split: one message
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"cannot load Hugging Face dataset {name!r} (config {config}, split "
                        f"{split!r}): {reason}", file=source) from None
    return _object_rows((dict(row) for row in dataset), source)


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet,
            ".csv": _read_csv}


def read_rows(source: str | Path) -> Rows:
    """Read every row of ``source`` as ``(number, object)`` pairs, numbers 1-based.

    Raises ``DataError`` for a missing file, an unsupported extension, a
    malformed JSON line (naming file and line) or a row that is not an object.
    """
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        return _read_hf(source)
    path = Path(source)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"unsupported file type {path.suffix or '(none)'!r}; supported: "
                        f"{', '.join(SUPPORTED_EXTENSIONS)} or hf:NAME[:SPLIT]", file=str(path))
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", file=str(path))
    try:
        return reader(path)
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text: {error.reason}", file=str(path)) from None


def load_records(source: str | Path, kind: str, require: Required | None = None) -> list[dict]:
    """Read ``source`` and validate every row as a record of ``kind`` (that has every
    field of ``require``, see ``prefalign.data.schema.validate_record``)."""
    return validate_records(read_rows(source), kind, file=str(source), require=require)


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def dataset_fingerprint(records: list[dict]) -> str:
    """First 16 hex digits of the sha256 of the records' canonical JSON."""
    return hashlib.sha256(canonical_json(records).encode("utf-8")).hexdigest()[:16]


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """Write ``records`` as JSON lines, atomically: a temporary file then a rename.

    A reader never sees a half-written file, and an existing file survives a
    failure intact. The temporary file sits in the same directory (so the
    rename is atomic) and is created with the usual permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
