"""Each cell's metrics, and per grid point their mean and 95% t-interval over seeds.

A metric's value in a cell is ``eval.json[key]`` or, failing that, ``key`` in the
last row of ``metrics.jsonl`` that has it (``eval/...``, ``reference/...``); a cell
without it contributes nothing to that metric. Only done cells count. A grid
point is one combination of swept values; its cells are its seeds. With no
``metrics:`` in the sweep file, every numeric key of the done cells' ``eval.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from prefalign.intervals import t_interval
from prefalign.sweep.runner import job_state, read_record
from prefalign.sweep.spec import Metric, Sweep


@dataclass
class CellResult:
    """One cell: ``status`` is ``done``, ``failed`` or ``not run``; its metric values."""

    id: str
    values: dict[str, Any]
    seed: int | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    exit_code: int | None = None
    message: str = ""


@dataclass
class Stat:
    """A metric over a grid point's seeds: mean, 95% t-interval (None under two values)."""

    mean: float
    low: float | None
    high: float | None
    values: list[float]


@dataclass
class Group:
    """A grid point: its swept values, its cells, and each metric's ``Stat``."""

    values: dict[str, Any]
    cells: list[CellResult]
    stats: dict[str, Stat]
    seconds: float | None

    @property
    def done(self) -> int:
        return sum(cell.status == "done" for cell in self.cells)


@dataclass
class SweepResults:
    """What the report shows: the metrics, every cell and every grid point."""

    metrics: list[Metric]
    cells: list[CellResult]
    groups: list[Group]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell_metrics(run_dir, keys: list[str] | None) -> dict[str, float]:
    """The cell's values of ``keys`` (module docstring); None: every numeric eval.json key."""
    evaluated = json.loads((run_dir / "eval.json").read_text())
    if keys is None:
        return {k: float(v) for k, v in evaluated.items() if _number(v)}
    found = {k: float(evaluated[k]) for k in keys if _number(evaluated.get(k))}
    missing = [k for k in keys if k not in found]
    path = run_dir / "metrics.jsonl"
    if missing and path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for key in missing:
            last = next((row[key] for row in reversed(rows) if _number(row.get(key))), None)
            if last is not None:
                found[key] = float(last)
    return found


def _cell(sweep: Sweep, job, keys: list[str] | None) -> CellResult:
    run_dir = sweep.job_dir(job)
    record = read_record(run_dir) or {}
    result = CellResult(job.id, job.values, job.seed, "not run", seconds=record.get("seconds"),
                        exit_code=record.get("exit_code"), message=record.get("last_line", ""))
    if job_state(sweep, job) == "done":
        result.status, result.metrics = "done", cell_metrics(run_dir, keys)
    elif record:
        result.status = "failed"
    return result


def _stat(values: list[float], bounds: tuple[float, float] | None) -> Stat:
    """Mean and t-interval, the interval clipped to the metric's ``bounds`` if any."""
    interval = t_interval(values)
    low, high = interval if interval is not None else (None, None)
    if bounds is not None and interval is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Stat(math.fsum(values) / len(values), low, high, values)


def collect_results(sweep: Sweep) -> SweepResults:
    """Every cell's state and metrics, grouped by grid point in the sweep's order."""
    keys = [m.key for m in sweep.metrics] or None
    cells = [_cell(sweep, job, keys) for job in sweep.cells]
    metrics = sweep.metrics or [Metric(k, k) for k in sorted(
        {k for cell in cells for k in cell.metrics})]
    points: dict[str, list[CellResult]] = {}
    for cell in cells:
        point = {name: cell.values.get(name) for name in sweep.parameters}
        points.setdefault(json.dumps(point, sort_keys=True, default=str), []).append(cell)
    groups = []
    for members in points.values():
        done = [cell for cell in members if cell.status == "done"]
        stats = {m.key: _stat(values, m.bounds) for m in metrics
                 if (values := [c.metrics[m.key] for c in done if m.key in c.metrics])}
        seconds = [c.seconds for c in done if c.seconds is not None]
        groups.append(Group({name: members[0].values.get(name) for name in sweep.parameters},
                            members, stats, sum(seconds) / len(seconds) if seconds else None))
    return SweepResults(metrics, cells, groups)
