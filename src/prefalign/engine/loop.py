"""The one training loop every stage shares, on HF Accelerate.

AdamW, a transformers LR schedule with warmup, gradient accumulation, clipping,
mixed precision, seeding, periodic evaluation and checkpoints, exact resume,
a NaN/inf guard, Ctrl-C handling, metrics and a progress bar. An algorithm
supplies only its batches and its step function (see ``algorithm.py``).

The same loop runs under ``accelerate launch``/``torchrun`` with DDP, FSDP or
DeepSpeed ZeRO. ``train.batch_size`` and ``train.grad_accum`` describe the
global batch; each rank computes its own share of every step's micro-batches
(``distributed.py`` explains why whole micro-batches, and why that is exact),
metrics are gathered from all ranks, and only rank 0 writes metrics, progress
and (unsharded) checkpoints.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, GradientAccumulationPlugin
from transformers import get_scheduler

from prefalign.config import TrainConfig
from prefalign.engine import distributed
from prefalign.engine.algorithm import Algorithm
from prefalign.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from prefalign.engine.metrics import MetricsLogger
from prefalign.engine.progress import TrainingProgress
from prefalign.engine.rundir import RunDir
from prefalign.engine.sharded import load_sharded_checkpoint, save_sharded_checkpoint
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


SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _release_precision(mixed_precision: str) -> None:
    """Let this process's next Accelerator use ``mixed_precision`` even if an earlier
    one (an earlier stage or test in the same process) used another: accelerate keeps
    the precision in a process-wide state that refuses to change. The process group
    (``PartialState``) is kept."""
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _borrow_no_split_modules(model: torch.nn.Module) -> None:
    """Let FSDP's transformer auto-wrap find the decoder-layer class inside a wrapper
    module (such as ``CompletionLogprobModel``) that does not name it itself."""
    if getattr(model, "_no_split_modules", None):
        return
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            model._no_split_modules = list(names)
            return


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
        state = distributed.process_state()  # joins the launcher's process group, if any
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.processes, self.rank = state.num_processes, state.process_index
        self.micro_per_rank = distributed.micro_batches_per_rank(cfg.grad_accum, self.processes)
        if accelerator is None:
            _release_precision(cfg.mixed_precision)
        self.accelerator = accelerator or Accelerator(
            cpu=distributed.launched_on_cpu(),
            mixed_precision=cfg.mixed_precision,
            log_with=list(cfg.trackers) or None,
            project_dir=str(run.root),
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=self.micro_per_rank, sync_with_dataloader=False),
        )
        self.accelerator.gradient_accumulation_steps = self.micro_per_rank
        self.sharded = self.accelerator.distributed_type in SHARDED
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise PrefalignError("the model has no trainable parameters")
        self.steps = total_steps(algorithm, cfg)
        optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      betas=cfg.adam_betas, eps=cfg.adam_eps)
        scheduler = get_scheduler(cfg.scheduler, optimizer,
                                  num_warmup_steps=int(cfg.warmup_ratio * self.steps),
                                  num_training_steps=self.steps)
        self._configure_sharding(model)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.accelerator.gradient_accumulation_steps != self.micro_per_rank:
            raise PrefalignError(
                f"the accelerate/DeepSpeed config sets gradient_accumulation_steps="
                f"{self.accelerator.gradient_accumulation_steps}; remove it (or set it to auto): "
                f"prefalign derives it from train.grad_accum / processes = {self.micro_per_rank}")
        self.scheduler = scheduler
        if self.sharded:
            self.accelerator.register_for_checkpointing(self.scheduler)
        self.metrics = MetricsLogger(run.metrics_path, self.accelerator,
                                     enabled=self.accelerator.is_main_process)
        self._stop_requested = False

    def _configure_sharding(self, model: torch.nn.Module) -> None:
        """Settings FSDP and DeepSpeed need before ``prepare``, taken from the train config."""
        if self.accelerator.distributed_type == DistributedType.FSDP:
            _borrow_no_split_modules(model)
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            ds_config = self.accelerator.state.deepspeed_plugin.deepspeed_config
            ds_config["train_micro_batch_size_per_gpu"] = self.cfg.batch_size
            if ds_config.get("gradient_clipping", "auto") == "auto":
                ds_config["gradient_clipping"] = self.cfg.max_grad_norm or 0.0
            offload = ds_config.get("zero_optimization", {}).get("offload_optimizer", {})
            if offload.get("device") == "cpu":
                # The optimizer is torch's AdamW, not DeepSpeed's CPUAdam.
                ds_config["zero_force_ds_cpu_optimizer"] = False

    # -- checkpoints -------------------------------------------------------
    def _save(self, step: int) -> None:
        state = {"total_steps": self.steps, "processes": self.processes}
        if self.sharded:
            save_sharded_checkpoint(self.accelerator, self.run.checkpoints, step, state,
                                    self.cfg.keep_checkpoints)
            return
        if self.accelerator.is_main_process:
            save_checkpoint(self.run.checkpoints, step, self.accelerator.unwrap_model(self.model),
                            self.optimizer, self.scheduler, state, self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> int:
        found = list_checkpoints(self.run.checkpoints)
        if not found:
            return 0
        step, path = found[-1]
        if self.sharded:
            state = load_sharded_checkpoint(self.accelerator, path)
        else:
            state = load_checkpoint(path, self.accelerator.unwrap_model(self.model),
                                    self.optimizer, self.scheduler)
        if state.get("total_steps") != self.steps:
            raise PrefalignError(
                f"cannot resume from {path}: it was made for {state.get('total_steps')} steps "
                f"and this config gives {self.steps}; resume with the same config")
        saved_by = state.get("processes", 1)
        if self.sharded and saved_by != self.processes:
            raise PrefalignError(
                f"cannot resume from {path}: its shards were written by {saved_by} processes "
                f"and this job has {self.processes}; relaunch with {saved_by}")
        # the final evaluation comes after the last checkpoint: a run killed during or
        # after it evaluates again on resume, so its earlier rows go
        self.metrics.truncate_after(step, evaluation_prefix=self.eval_prefix
                                    if step == self.steps else None)
        return step

    # -- the loop ----------------------------------------------------------
    def _gradient_norm(self) -> float | None:
        """Global gradient norm before clipping (clipping to ``max_grad_norm`` if set).

        Unsharded, every rank holds the full averaged gradient; sharded, only the
        launcher's collective clip knows the global norm (DeepSpeed clips inside
        its own step and reports the norm afterwards, or None before it has one).
        """
        limit = self.cfg.max_grad_norm
        if self.sharded:
            norm = self.accelerator.clip_grad_norm_(self.params, math.inf if limit is None
                                                    else limit)
            return None if norm is None else float(norm)
        norm = _grad_norm(self.params)
        if limit is not None and math.isfinite(norm):
            self.accelerator.clip_grad_norm_(self.params, limit)
        return norm

    def _forward_backward(self, step: int) -> dict[str, Any]:
        """This rank's micro-batches of optimizer step ``step``: losses, metrics, tokens."""
        rows, tokens, bad_loss = [], 0, None
        for index in distributed.my_micro_batches(step, self.cfg.grad_accum, self.rank,
                                                  self.processes):
            epoch, position = micro_batch_position(self.algorithm, index)
            batch = self.algorithm.batch(epoch, position)
            # accumulate(): no gradient sync before this rank's last micro-batch, and
            # backward() scales the loss by 1 / micro-batches per rank.
            with self.accelerator.accumulate(self.model):
                with self.accelerator.autocast():
                    out = self.algorithm.step(self.model, batch)
                loss = float(out.loss.detach())
                if not math.isfinite(loss) and bad_loss is None:
                    bad_loss = loss
                self.accelerator.backward(out.loss)
            rows.append({"loss": loss, **out.metrics})
            tokens += out.tokens
        return {"rows": rows, "tokens": tokens, "bad_loss": bad_loss,
                "stop": self._stop_requested}

    def _optimizer_step(self, step: int) -> tuple[dict[str, float], bool]:
        """One optimizer step over the global batch; returns its metrics (the same on
        every rank) and whether any rank asked to stop."""
        started = time.perf_counter()
        self.model.train()
        shares = distributed.all_gather_objects(self._forward_backward(step))
        bad = [share["bad_loss"] for share in shares if share["bad_loss"] is not None]
        if bad:
            raise TrainingDiverged(
                f"loss became {bad[0]} at step {step + 1}; the run stopped and "
                f"kept its last good checkpoint in {self.run.checkpoints}")
        grad_norm = self._gradient_norm()
        if grad_norm is not None and not math.isfinite(grad_norm):
            raise TrainingDiverged(f"gradient norm became {grad_norm} at step {step + 1}; the run "
                                   f"stopped and kept its last good checkpoint")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        metrics = _mean_metrics([row for share in shares for row in share["rows"]])
        tokens = sum(share["tokens"] for share in shares)
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        metrics.update(lr=self.scheduler.get_last_lr()[0],
                       tokens_per_s=tokens / max(elapsed, 1e-9), step_time_s=elapsed,
                       epoch=micro_batch_position(self.algorithm,
                                                  (step + 1) * self.cfg.grad_accum - 1)[0])
        return metrics, any(share["stop"] for share in shares)

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out metrics; every rank computes them (FSDP needs all ranks in a forward)."""
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
                self._stop_requested = stop.requested
                metrics, stop_requested = self._optimizer_step(step)
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
                # Several ranks decide from the flags gathered with the step, so they
                # all stop after the same step; a late signal counts at the next one.
                if step < self.steps and (stop_requested if self.processes > 1
                                          else stop.requested):
                    self._save(step)
                    raise TrainingInterrupted(
                        f"interrupted at step {step}; checkpoint saved in "
                        f"{self.run.checkpoints}; continue with --resume")
        result.eval_metrics = self.evaluate(step)
        if self.cfg.trackers and self.accelerator.is_main_process:
            self.accelerator.end_training()
        self.accelerator.wait_for_everyone()
        return result

