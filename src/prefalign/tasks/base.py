"""The ``Task`` contract: what a task gives the rest of prefalign.

A task is a problem family with a programmatic check. It declares:

* ``makers`` — for each record kind it can produce (``"sft"``, ``"preference"``,
  ``"prompt"``), a function returning records. Its keyword parameters, each with
  a default, are what a source string may set (``countdown:n=500&seed=1``); a
  value is converted to the type of the parameter's default. A task that reads
  files instead (GSM8K) says which ones with ``reads`` and its makers take the
  path as ``path``;
* ``content_key`` — ``record -> str``, equal for two records that are the same
  problem (a Countdown problem with its numbers permuted is the same problem).
  Held-out sets are split by it, so they are content-disjoint by construction;
* ``verifier`` — a factory ``(**params) -> Verifier``; its keyword parameters
  are the reward's parameters in a config (``{name: countdown, params: ...}``).
  The reward registry (``prefalign.rewards``) and the pass-rate evaluation
  (``prefalign.eval.verifier``) both use it;
* ``metrics`` — optional, ``(records, completions) -> dict`` of task figures;
* ``pipeline`` — optional name of the staged pipeline built for the task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from prefalign.data.load import canonical_json

RecordMaker = Callable[..., list[dict]]


@runtime_checkable
class Verifier(Protocol):
    """Scores one completion of one record: 1.0 passes, anything less does not.

    ``required_fields`` are the record fields ``score`` reads (the answer, the
    numbers, the episode). Partial credit (a well-formed but wrong answer) is a
    score in (0, 1): a reward may use it, a pass rate never counts it.
    """

    name: str
    required_fields: tuple[str, ...]

    def score(self, completion: str, record: dict) -> float: ...


def passes(verifier: Verifier, completion: str, record: dict) -> bool:
    """The strict verdict: ``score >= 1``."""
    return verifier.score(completion, record) >= 1.0


def prompt_key(record: dict) -> str:
    """The default content key: the prompt (text or chat messages) as canonical JSON."""
    return canonical_json(record["prompt"])


@dataclass(frozen=True)
class Task:
    """One task; see the module docstring for each field."""

    name: str
    makers: Mapping[str, RecordMaker]
    content_key: Callable[[dict], str] = prompt_key
    verifier: Callable[..., Verifier] | None = None
    metrics: Callable[[list[dict], list[str]], dict] | None = None
    reads: Callable[[str], bool] | None = None
    pipeline: str | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"task name must be an identifier, got {self.name!r}")
        if not self.makers:
            raise ValueError(f"task {self.name!r} has no record makers")


def first_row_matches(source: str, splits: tuple[str, ...],
                      predicate: Callable[[dict], bool]) -> bool:
    """True when ``source`` — a .jsonl/.json file, or a folder holding ``<split>.jsonl``
    for the first of ``splits`` present — has a first row that satisfies ``predicate``
    (how a task that reads files says which sources are its own)."""
    from pathlib import Path

    from prefalign.data.load import read_rows

    path = Path(source)
    if path.is_dir():
        path = next((path / f"{s}.jsonl" for s in splits if (path / f"{s}.jsonl").is_file()),
                    path)
    if not path.is_file() or path.suffix.lower() not in (".jsonl", ".json"):
        return False
    rows = read_rows(path)
    return bool(rows) and predicate(rows[0][1])

