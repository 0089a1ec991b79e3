"""Several processes, one result: how the engine splits work across ranks.

Under ``accelerate launch`` or ``torchrun`` every process runs the same stage
code. This module answers the few questions that code has to ask — which rank
am I, how many are there, which micro-batches are mine — and moves small
Python objects between ranks.

Data sharding. One optimizer step consumes ``grad_accum`` micro-batches of
``batch_size`` examples (the global batch, independent of the number of
processes). Rank ``r`` of ``N`` builds micro-batches
``r·k, …, r·k + k − 1`` of that window, ``k = grad_accum / N``, and nothing
else. Every micro-batch stays whole on one rank, so its loss is computed
exactly as in one process whatever its normalisation:

* SFT's per-token mean ``Σ nll / n_tokens`` over the micro-batch, and
* DPO's per-pair mean over the micro-batch's pairs (and batch statistics such
  as ``center_logits``, or a GRPO group's mean and std),

and the step's gradient ``(1/G) Σ_m ∇L_m`` is restored by accumulation
(``1/k`` per micro-batch) and DDP's average over ranks (``1/N``):
``(1/N) Σ_r (1/k) Σ_{m∈r} ∇L_m = (1/G) Σ_m ∇L_m``. Splitting a micro-batch
across ranks instead would average per-rank means, which weights each rank
equally rather than each token or pair, and is exact only when every rank
happens to hold the same number of tokens. The price of this choice is that
``grad_accum`` must be a multiple of the number of processes.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from prefalign.errors import ConfigError


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the job (1 when not launched distributed)."""
    if is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when not launched distributed)."""
    if is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on the rank that writes shared files (metrics, checkpoints, final weights)."""
    return rank() == 0


def launched_on_cpu() -> bool:
    """Several processes and no CUDA: the ranks talk over gloo.

    Accelerate detects this by itself under ``accelerate launch --cpu``; under
    plain ``torchrun`` it must be told, or each process would train alone.
    """
    return world_size() > 1 and not torch.cuda.is_available()


def process_state():
    """Accelerate's ``PartialState``, joining the launcher's process group if there is one.

    Creating it early lets code that runs before the engine (the reference
    log-prob pass) talk to the other ranks. In a single process it is local.
    """
    from accelerate import PartialState

    return PartialState(cpu=launched_on_cpu())


def ensure_process_group() -> None:
    """Join the launcher's process group (gloo on CPU, NCCL on GPU) if there is one."""
    if world_size() > 1 and not is_initialized():
        process_state()


def micro_batches_per_rank(grad_accum: int, processes: int) -> int:
    """``grad_accum / processes``; a clear error when it does not divide evenly."""
    if grad_accum % processes != 0:
        raise ConfigError(
            f"train.grad_accum={grad_accum} is not a multiple of the {processes} processes: "
            f"each optimizer step deals its grad_accum micro-batches out to the processes, "
            f"so set train.grad_accum to a multiple of {processes} (to keep the global batch, "
            f"divide train.batch_size by the same factor)")
    return grad_accum // processes


def my_micro_batches(step: int, grad_accum: int, rank_: int, processes: int) -> list[int]:
    """Run-wide indices of the micro-batches rank ``rank_`` computes in optimizer step ``step``."""
    per_rank = micro_batches_per_rank(grad_accum, processes)
    first = step * grad_accum + rank_ * per_rank
    return list(range(first, first + per_rank))


def all_gather_objects(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank (``[value]`` alone)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` on every rank."""
    if not is_initialized() or dist.get_world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def barrier() -> None:
    if is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shard_indices(count: int, rank_: int, processes: int) -> list[int]:
    """Items ``rank_, rank_ + N, …`` of ``range(count)``: a round-robin share."""
    return list(range(rank_, count, processes))


def concat_in_order(shards: list[list[tuple[int, torch.Tensor]]]) -> list[torch.Tensor]:
    """Undo ``shard_indices``: put ``(index, tensor)`` pairs from every rank back in order."""
    pairs = sorted((pair for shard in shards for pair in shard), key=lambda pair: pair[0])
    return [tensor for _, tensor in pairs]
