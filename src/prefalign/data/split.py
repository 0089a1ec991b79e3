"""Deterministic train/validation splits with no prompt leakage.

A split is a pure function of the records' content and the seed: each record's
group key is hashed with the seed to a number in [0, 1) and the record goes to
the split whose cumulative fraction interval holds that number. Records sharing
a key therefore always share a split, so no key can leak from training into
evaluation, and adding or removing other records never moves a record to
another split.

The key is a field (by default ``prompt``) or a *content key*: a function of the
record saying what makes two records the same problem (a task's
``content_key``, e.g. the multiset of numbers and the target of a Countdown
problem, whatever their order in the prompt). Splitting by a content key makes
held-out sets content-disjoint by construction, not only prompt-disjoint.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

from prefalign.data.load import canonical_json
from prefalign.errors import ConfigError, DataError

_FRACTION_TOLERANCE = 1e-6

Key = str | Callable[[dict], str]
"""A record field, or a content key function ``record -> str``."""


def parse_fractions(text: str) -> dict[str, float]:
    """Parse ``"train=0.9,val=0.1"`` into ``{"train": 0.9, "val": 0.1}``."""
    fractions: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            if not sep or not name:
                raise ValueError
            fraction = float(value)
        except ValueError:
            raise ConfigError(f"invalid split fraction {part.strip()!r}; expected NAME=FRACTION, "
                              "e.g. train=0.9,val=0.1") from None
        if name in fractions:
            raise ConfigError(f"split {name!r} is given twice in {text!r}")
        fractions[name] = fraction
    return fractions


def _check_fractions(fractions: dict[str, float]) -> None:
    if not fractions:
        raise ConfigError("no split fractions given")
    for name, fraction in fractions.items():
        if not (math.isfinite(fraction) and fraction > 0):
            raise ConfigError(f"split fraction for {name!r} must be positive, got {fraction}")
    total = sum(fractions.values())
    if abs(total - 1.0) > _FRACTION_TOLERANCE:
        raise ConfigError(f"split fractions must sum to 1, got {total:g} "
                          f"({', '.join(f'{k}={v:g}' for k, v in fractions.items())})")


def _key_name(key: Key) -> str:
    return key if isinstance(key, str) else getattr(key, "__name__", "content key")


def _group_key(record: dict, key: Key, index: int) -> str:
    if callable(key):
        return key(record)
    if key not in record:
        raise DataError(f"record {index} has no field to group splits by", field=key)
    return canonical_json(record[key])


def unit_hash(text: str, seed: int | str) -> float:
    """Map ``(seed, text)`` to a number in [0, 1): the first 8 bytes of sha256 / 2**64."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


HELD_OUT_SALT = "held-out"


def split_records(records: list[dict], fractions: dict[str, float], seed: int,
                  key: Key = "prompt", salt: str = "") -> dict[str, list[dict]]:
    """Split ``records`` by ``fractions`` (positive, summing to 1), deterministically.

    Record ``r`` goes to split ``j`` when ``c_{j-1} <= h(seed, r[key]) < c_j``,
    where ``c_j`` are the cumulative fractions and ``h`` is ``unit_hash`` of the
    canonical JSON of ``r[key]`` (or ``key(r)`` when ``key`` is a content key).
    Every split named in ``fractions`` is present in the result (possibly empty)
    and keeps the input order. A ``salt`` (``h(salt:seed, ·)``) makes the hash
    independent of unsalted splits: a stage's held-out split (``HELD_OUT_SALT``) of
    a file that ``prefalign data split`` wrote with the same seed would otherwise see
    only hashes below that file's bound, and split off nothing.
    """
    _check_fractions(fractions)
    names = list(fractions)
    bounds, running = [], 0.0
    for name in names:
        running += fractions[name]
        bounds.append(running)
    splits: dict[str, list[dict]] = {name: [] for name in names}
    for index, record in enumerate(records):
        position = unit_hash(_group_key(record, key, index), f"{salt}:{seed}" if salt else seed)
        target = next((name for name, bound in zip(names, bounds) if position < bound), names[-1])
        splits[target].append(record)
    return splits


def check_leakage(splits: dict[str, list[dict]], key: Key = "prompt") -> None:
    """Raise ``DataError`` if any ``key`` value (field or content key) appears in more
    than one split."""
    homes: dict[str, list[str]] = {}
    for name, records in splits.items():
        for index, record in enumerate(records):
            owners = homes.setdefault(_group_key(record, key, index), [])
            if name not in owners:
                owners.append(name)
    leaked = {value: owners for value, owners in homes.items() if len(owners) > 1}
    if leaked:
        value, owners = next(iter(leaked.items()))
        shown = value if len(value) <= 80 else value[:77] + "..."
        name = _key_name(key)
        raise DataError(f"{len(leaked)} {name} value(s) appear in more than one split, e.g. "
                        f"{shown} in {' and '.join(owners)}",
                        field=key if isinstance(key, str) else None)
