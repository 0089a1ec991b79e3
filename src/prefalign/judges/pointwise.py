"""Shared machinery of model-backed pointwise judges: a cache by model files and texts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from prefalign.judges.cache import JudgeCache, JudgeStats, default_cache_dir, text_hash


def files_fingerprint(root: Path) -> str:
    """A hash of every file's relative path, size and modification time under ``root``."""
    entries = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in root.rglob("*") if p.is_file())
    return text_hash(str(root.resolve()), entries)


def open_cache(fingerprint: str, stats: JudgeStats, cache: bool = True,
               cache_dir: str | Path | None = None) -> JudgeCache:
    """The judge's cache: on disk under ``cache_dir`` (default the user cache) or in memory."""
    return JudgeCache(fingerprint, stats, (cache_dir or default_cache_dir()) if cache else None)


class CachedPointwise(ABC):
    """Shared scoring path of model judges: cache lookup, then ``_score_batch``."""

    name: str
    required_fields: tuple[str, ...] = ()
    stats: JudgeStats
    cache: JudgeCache
    batch_size: int = 8

    def score(self, prompts: list[str], responses: list[str],
              records: list[dict] | None = None) -> list[float]:
        return self.cache.get_or_compute(list(zip(prompts, responses)), self._compute)

    def _compute(self, items: list[tuple[str, ...]]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            self.stats.requests += len(chunk)
            out.extend(self._score_batch([p for p, _ in chunk], [r for _, r in chunk]))
        return out

    @abstractmethod
    def _score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One score per (prompt, response), computed by the model (no cache)."""


def model_options(options: dict) -> dict:
    """The build options a model judge takes (others, e.g. a rubric, do not apply)."""
    keep = ("device", "batch_size", "cache", "cache_dir")
    return {k: v for k, v in options.items() if k in keep}
