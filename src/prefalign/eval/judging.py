"""Judges applied to a comparison: checks before any model runs, scores, pass verdicts.

A judge is a pointwise or a pairwise judge of ``prefalign.judges``. A pointwise
judge whose name starts with ``verifier`` (or that sets ``is_verifier``) is a task
verifier: an answer passes when its score is at least 1 (partial credit fails).
"""

from __future__ import annotations

from prefalign.errors import ConfigError, DataError
from prefalign.judges.base import is_pairwise


def is_verifier(judge) -> bool:
    """True for a task-verifier judge (see the module docstring)."""
    return bool(getattr(judge, "is_verifier", False)) or str(judge.name).startswith("verifier")


def check_judges(judges: list, records: list[dict], source: str) -> None:
    """A ``DataError`` naming the record and field when a record lacks a field some
    judge reads; a ``ConfigError`` when no judge is given."""
    if not judges:
        raise ConfigError("no judge: give at least one --judge (e.g. verifier:arithmetic)")
    for judge in judges:
        fields = () if is_pairwise(judge) else tuple(getattr(judge, "required_fields", ()))
        for number, record in enumerate(records, 1):
            missing = [f for f in fields if f not in record]
            if missing:
                raise DataError(f"record {number} has no field '{missing[0]}', which judge "
                                f"'{judge.name}' reads (it needs: {', '.join(fields)})",
                                file=source)


def pointwise(judges: list) -> list:
    """The pointwise judges, in order."""
    return [j for j in judges if not is_pairwise(j)]


def pairwise(judges: list) -> list:
    """The pairwise judges, in order."""
    return [j for j in judges if is_pairwise(j)]


def score(judge, prompts: list[str], texts: list[str], records: list[dict]) -> list[float]:
    """``judge``'s scores as floats, one per answer."""
    values = [float(v) for v in judge.score(prompts, texts, records)]
    if len(values) != len(texts):
        raise ValueError(f"judge '{judge.name}' returned {len(values)} scores for "
                         f"{len(texts)} answers")
    return values
