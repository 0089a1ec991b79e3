"""Weighted mixtures of training sources: how many records each source gives, and which.

A mixture of sources ``s_1..s_k`` with weights ``w_1..w_k > 0`` yields a fixed
number ``N`` of records, source ``i`` contributing ``n_i`` of them, with
``n_i / N`` as close to ``w_i / Σw`` as whole records allow (largest-remainder
apportionment: ``n_i = ⌊N·w_i/Σw⌋``, and the records left over go one each to
the sources with the largest fractional parts, the earlier source on a tie), so
``|n_i − N·w_i/Σw| < 1``.

Within a source of ``m`` records the ``n_i`` records are drawn without
replacement when ``n_i ≤ m``; otherwise the source is upsampled: every record
``⌊n_i/m⌋`` times and ``n_i mod m`` more drawn without replacement (sampling with
replacement, balanced so that no record is used more than once more than any
other). The result is shuffled. Everything is a pure function of the records,
the weights, ``N`` and the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from prefalign.errors import DataError


def mixture_counts(weights: Sequence[float], total: int) -> list[int]:
    """``n_i``: ``total`` records apportioned by ``weights`` (largest remainder)."""
    if not weights or any(not (math.isfinite(w) and w > 0) for w in weights):
        raise DataError(f"mixture weights must be positive numbers, got {list(weights)}")
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def draw(records: Sequence[dict], count: int, rng: random.Random) -> list[dict]:
    """``count`` records of ``records``: without replacement when there are enough,
    else each record ``⌊count/m⌋`` times plus ``count mod m`` without replacement."""
    copies, rest = divmod(count, len(records))
    return list(records) * copies + rng.sample(list(records), rest)


def mix(parts: Sequence[Sequence[dict]], weights: Sequence[float], total: int, seed: int,
        names: Sequence[str] | None = None) -> list[dict]:
    """``total`` records from ``parts`` in the shares ``weights`` (module docstring),
    shuffled; seeded by ``seed``. A part that must give records but has none is a
    ``DataError`` naming it (``names[i]``)."""
    rng = random.Random(f"mixture:{seed}")
    mixed = []
    for index, (records, count) in enumerate(zip(parts, mixture_counts(weights, total))):
        if count == 0:
            continue
        if not records:
            name = names[index] if names is not None else f"source {index}"
            raise DataError(f"mixture source has no training records to draw {count} from",
                            file=name)
        mixed.extend(draw(records, count, rng))
    rng.shuffle(mixed)
    return mixed
