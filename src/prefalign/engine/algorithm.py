"""What an algorithm gives the engine: its batches and a step function.

An algorithm (SFT, DPO, a reward model, ...) is small. It says how many
micro-batches an epoch has and builds micro-batch ``i`` of epoch ``e`` (a pure
function of the seed, the epoch and the index, so a resumed run sees the same
data order), and it turns a batch into a loss and metrics. Everything else —
devices, precision, accumulation, clipping, schedules, checkpoints, logging —
is the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class StepOutput:
    """The result of one micro-batch: a differentiable loss and detached metrics."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    tokens: int = 0


class Algorithm(Protocol):
    def num_batches(self, epoch: int) -> int:
        """Micro-batches in epoch ``epoch``."""

    def batch(self, epoch: int, index: int) -> Any:
        """Micro-batch ``index`` of epoch ``epoch``, ready for ``step``."""

    def step(self, model: torch.nn.Module, batch: Any) -> StepOutput:
        """Forward pass: loss and metrics for one micro-batch."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Held-out metrics (may be empty)."""
