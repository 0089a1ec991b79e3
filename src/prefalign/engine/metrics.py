"""Metric logging: always ``metrics.jsonl``, plus any Accelerate tracker.

One JSON object per line with ``step`` and the metric values. On resume, lines
from steps after the checkpoint are dropped so the file describes exactly one
history.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All metric rows of a run, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLogger:
    """Appends metric rows to ``metrics.jsonl`` and forwards them to trackers."""

    def __init__(self, path: str | Path, accelerator=None, enabled: bool = True):
        self.path = Path(path)
        self.accelerator = accelerator
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (used when resuming from a checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step}
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)
            row[key] = value
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            numeric = {k: v for k, v in values.items() if isinstance(v, (int, float))}
            self.accelerator.log(numeric, step=step)
