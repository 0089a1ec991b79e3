"""A progress display with loss, throughput and ETA.

On a terminal: a rich progress bar. Elsewhere (CI, logs piped to a file): one
compact line about every 5% of the run, so long work is never silent.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True,
                 description: str = "train"):
        self.total, self.start, self.enabled = total, start, enabled
        self.description = description
        self.console = Console(stderr=True)
        self.interactive = enabled and self.console.is_terminal
        self.every = max(1, total // 20)
        self.started = time.perf_counter()
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        self.started = time.perf_counter()
        if self.interactive:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=self.console)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total,
                                            completed=self.start, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        parts = []
        if "loss" in metrics:
            parts.append(f"loss {metrics['loss']:.4f}")
        if "tokens_per_s" in metrics:
            parts.append(f"{metrics['tokens_per_s']:.0f} tok/s")
        info = " ".join(parts)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        if step % self.every == 0 or step == self.total:
            done = step - self.start
            elapsed = time.perf_counter() - self.started
            eta = elapsed / max(done, 1) * (self.total - step)
            print(f"[{self.description}] step {step}/{self.total} {info} "
                  f"elapsed {elapsed:.0f}s eta {eta:.0f}s", file=sys.stderr, flush=True)
