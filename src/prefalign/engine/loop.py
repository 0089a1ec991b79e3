"""The one training loop every stage shares, on HF Accelerate.

AdamW, a transformers LR schedule with warmup, gradient accumulation, clipping,
mixed precision, seeding, periodic evaluation and checkpoints, exact resume,
a NaN/inf guard, Ctrl-C handling, metrics and a progress bar. An algorithm
supplies only its batches and its step function (see ``algorithm.py``).
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from transformers import get_scheduler

from prefalign.config import TrainConfig
from prefalign.engine.algorithm import Algorithm
from prefalign.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from prefalign.engine.metrics import MetricsLogger
from prefalign.engine.progress import TrainingProgress
from prefalign.engine.rundir import RunDir
from prefalign.errors import PrefalignError


class TrainingDiverged(PrefalignError):
    """The loss or gradient became NaN or infinite."""


class TrainingInterrupted(PrefalignError):
    """Ctrl-C: a checkpoint was saved and the run can be resumed."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    step: int
    last_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)


def total_steps(algorithm: Algorithm, cfg: TrainConfig) -> int:
    """Optimizer steps: ``max_steps`` or ``epochs`` worth of micro-batches."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_epoch = algorithm.num_batches(0)
    if per_epoch == 0:
        raise PrefalignError("no training batches: the training data is empty after filtering")
    return max(1, math.floor(cfg.epochs * per_epoch / cfg.grad_accum))


def micro_batch_position(algorithm: Algorithm, global_index: int) -> tuple[int, int]:
    """Map the n-th micro-batch of the run to (epoch, index within the epoch)."""
    epoch = 0
    while True:
        size = algorithm.num_batches(epoch)
        if size == 0:
            raise PrefalignError(f"epoch {epoch} has no batches")
        if global_index < size:
            return epoch, global_index
        global_index -= size
        epoch += 1


def _mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for row in rows for k in row}
    return {k: float(np.mean([row[k] for row in rows if k in row])) for k in sorted(keys)}


def _grad_norm(parameters: list[torch.nn.Parameter]) -> float:
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


class _StopOnSigint:
    """Turn the first Ctrl-C into a request to stop after the current step.

    The step finishes, a checkpoint is written, and the run ends resumable; a
    second Ctrl-C interrupts at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Engine:
    """Runs an algorithm's step function for a number of optimizer steps."""

    def __init__(self, model: torch.nn.Module, algorithm: Algorithm, cfg: TrainConfig,
                 run: RunDir, *, accelerator: Accelerator | None = None,
                 on_step_end: Callable[[int, dict[str, float]], None] | None = None,
                 eval_prefix: str = "eval/"):
        self.cfg = cfg
        self.run = run
        self.algorithm = algorithm
        self.on_step_end = on_step_end
        self.eval_prefix = eval_prefix
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=cfg.mixed_precision,
            log_with=list(cfg.trackers) or None,
            project_dir=str(run.root),
        )
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise PrefalignError("the model has no trainable parameters")
        self.steps = total_steps(algorithm, cfg)
        optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = get_scheduler(cfg.scheduler, optimizer,
                                  num_warmup_steps=int(cfg.warmup_ratio * self.steps),
                                  num_training_steps=self.steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.scheduler = scheduler
        self.metrics = MetricsLogger(run.metrics_path, self.accelerator,
                                     enabled=self.accelerator.is_main_process)

    # -- checkpoints -------------------------------------------------------
    def _save(self, step: int) -> None:
        if self.accelerator.is_main_process:
            save_checkpoint(self.run.checkpoints, step, self.accelerator.unwrap_model(self.model),
                            self.optimizer, self.scheduler,
                            {"total_steps": self.steps}, self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> int:
        found = list_checkpoints(self.run.checkpoints)
        if not found:
            return 0
        step, path = found[-1]
        state = load_checkpoint(path, self.accelerator.unwrap_model(self.model),
                                self.optimizer, self.scheduler)
        if state.get("total_steps") != self.steps:
            raise PrefalignError(
                f"cannot resume from {path}: it was made for {state.get('total_steps')} steps "
                f"and this config gives {self.steps}; resume with the same config")
        self.metrics.truncate_after(step)
        return step

    # -- the loop ----------------------------------------------------------
    def _optimizer_step(self, step: int) -> dict[str, float]:
        rows, tokens = [], 0
        started = time.perf_counter()
        self.model.train()
        for micro in range(self.cfg.grad_accum):
            epoch, index = micro_batch_position(self.algorithm, step * self.cfg.grad_accum + micro)
            batch = self.algorithm.batch(epoch, index)
            with self.accelerator.autocast():
                out = self.algorithm.step(self.model, batch)
            if not torch.isfinite(out.loss.detach()):
                raise TrainingDiverged(
                    f"loss became {out.loss.item()} at step {step + 1}; the run stopped and "
                    f"kept its last good checkpoint in {self.run.checkpoints}")
            self.accelerator.backward(out.loss / self.cfg.grad_accum)
            rows.append({"loss": float(out.loss.detach()), **out.metrics})
            tokens += out.tokens
        grad_norm = _grad_norm(self.params)
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(f"gradient norm became {grad_norm} at step {step + 1}; the run "
                                   f"stopped and kept its last good checkpoint")
        if self.cfg.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        metrics = _mean_metrics(rows)
        metrics.update(grad_norm=grad_norm, lr=self.scheduler.get_last_lr()[0],
                       tokens_per_s=tokens / max(elapsed, 1e-9), step_time_s=elapsed,
                       epoch=micro_batch_position(self.algorithm,
                                                  (step + 1) * self.cfg.grad_accum - 1)[0])
        return metrics

    def evaluate(self, step: int) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), self.accelerator.autocast():
            values = self.algorithm.evaluate(self.model)
        if values:
            self.metrics.log(step, {self.eval_prefix + k: v for k, v in values.items()})
        return values

    def train(self, resume: bool = False) -> TrainResult:
        """Run to ``self.steps``; with ``resume``, continue from the latest checkpoint."""
        if self.cfg.trackers and self.accelerator.is_main_process:
            self.accelerator.init_trackers(self.run.root.name)
        start = self._resume() if resume else 0
        if not resume:
            self.metrics.truncate_after(0)
        if start == 0 and self.cfg.eval_every:
            self.evaluate(0)
        result = TrainResult(step=start)
        progress = TrainingProgress(self.steps, start, enabled=self.accelerator.is_main_process)
        step = start
        with progress, _StopOnSigint() as stop:
            while step < self.steps:
                metrics = self._optimizer_step(step)
                step += 1
                result.step, result.last_metrics = step, metrics
                if step % self.cfg.log_every == 0 or step == self.steps:
                    self.metrics.log(step, metrics)
                progress.update(step, metrics)
                if self.cfg.eval_every and step % self.cfg.eval_every == 0 and step < self.steps:
                    self.evaluate(step)
                if self.cfg.save_every and step % self.cfg.save_every == 0:
                    self._save(step)
                if self.on_step_end is not None:
                    self.on_step_end(step, metrics)
                if stop.requested and step < self.steps:
                    self._save(step)
                    raise TrainingInterrupted(
                        f"interrupted at step {step}; checkpoint saved in {self.run.checkpoints}; "
                        f"continue with --resume")
        result.eval_metrics = self.evaluate(step)
        if self.cfg.trackers and self.accelerator.is_main_process:
            self.accelerator.end_training()
        return result
