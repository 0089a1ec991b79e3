"""Metric logging: always ``metrics.jsonl``, plus any Accelerate tracker.

One JSON object per line with ``step`` and the metric values. On resume, lines
from steps after the checkpoint are dropped so the file describes exactly one
history. Under several processes only rank 0 writes (the engine hands it
metrics already gathered from every rank), so the file has one line per step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from prefalign.engine.distributed import is_main_process


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All metric rows of a run, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLogger:
    """Appends metric rows to ``metrics.jsonl`` and forwards them to trackers.

    ``enabled`` defaults to "this is rank 0", so a logger made anywhere in stage
    code never writes the same line once per process.
    """

    def __init__(self, path: str | Path, accelerator=None, enabled: bool | None = None):
        self.path = Path(path)
        self.accelerator = accelerator
        self.enabled = is_main_process() if enabled is None else enabled

    def truncate_after(self, step: int, evaluation_prefix: str | None = None) -> None:
        """Drop rows logged after ``step`` (used when resuming from a checkpoint), and
        with ``evaluation_prefix`` the evaluation rows at ``step`` too (those whose keys
        all start with it: logged after that step's checkpoint)."""
        if not self.enabled or not self.path.exists():
            return

        def after_checkpoint(row: dict) -> bool:
            keys = [k for k in row if k != "step"]
            return (evaluation_prefix is not None and row.get("step", 0) == step and keys
                    and all(k.startswith(evaluation_prefix) for k in keys))

        rows = [r for r in read_metrics(self.path)
                if r.get("step", 0) <= step and not after_checkpoint(r)]
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
