"""The judgment cache and the request counter every judge keeps.

A judgment is cached under ``sha256(fingerprint, prompt, responses…)``: the
judge's fingerprint (the model's content or the server URL and model, plus the
rubric) and the exact texts. The cache lives in memory and, unless disabled,
in one append-only JSON-lines file per judge under ``<cache>/judgments/``
(``$PREFALIGN_CACHE`` or ``~/.cache/prefalign``), so a re-run of an evaluation
asks nothing twice. A torn last line (a killed run) is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CHUNK = 32


@dataclass
class JudgeStats:
    """What a judge did: ``requests`` are new evaluations (HTTP requests or model
    inputs), ``hits``/``misses`` cache lookups, tokens as counted by the backend
    (``usage`` from a server; input tokens for a local model)."""

    requests: int = 0
    hits: int = 0
    misses: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for JSON reports)."""
        return asdict(self)


def default_cache_dir() -> Path:
    """``<prefalign cache>/judgments``."""
    from prefalign.models.embedded import cache_root

    return cache_root() / "judgments"


def text_hash(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts``."""
    blob = json.dumps(list(parts), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Judgments of one judge keyed by (fingerprint, texts); thread-safe.

    ``directory=None`` keeps them in memory only.
    """

    def __init__(self, fingerprint: str, stats: JudgeStats, directory: str | Path | None = None):
        self.fingerprint, self.stats = fingerprint, stats
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self.path = None
        if directory is not None:
            self.path = Path(directory) / f"{text_hash(fingerprint)[:24]}.jsonl"
            self._values.update(_read(self.path))

    def key(self, texts: Sequence[str]) -> str:
        return text_hash(self.fingerprint, *texts)

    def get_or_compute(self, items: list[tuple[str, ...]],
                       compute: Callable[[list[tuple[str, ...]]], list[Any]]) -> list[Any]:
        """Values for ``items``: cached ones looked up, the others computed by ``compute``
        (on the distinct missing items, in order, ``CHUNK`` at a time) and stored after
        each chunk, so an interrupted evaluation keeps what it judged."""
        keys = [self.key(item) for item in items]
        with self._lock:
            missing = list(dict.fromkeys(k for k in keys if k not in self._values))
            self.stats.misses += len(missing)
            self.stats.hits += len(keys) - len(missing)
        if missing:
            by_key = {k: item for k, item in zip(keys, items)}
            for start in range(0, len(missing), CHUNK):
                chunk = missing[start:start + CHUNK]
                self._store(dict(zip(chunk, compute([by_key[k] for k in chunk]))))
        with self._lock:
            return [self._values[k] for k in keys]

    def _store(self, new: dict[str, Any]) -> None:
        with self._lock:
            self._values.update(new)
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                for key, value in new.items():
                    handle.write(json.dumps({"key": key, "value": value}) + "\n")


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            values[row["key"]] = row["value"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return values
