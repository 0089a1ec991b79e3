"""The cheapest change that makes a job fit a device.

Candidate changes, cheapest first — by what they cost in speed, and last of
all in what is being trained:

1. precompute the reference log-probs (DPO with a live reference): free;
2. shard optimizer state and gradients across the devices (ZeRO-2): a little
   communication;
3. a smaller micro-batch with more accumulation, the global batch unchanged:
   lower arithmetic intensity;
4. activation checkpointing: about one more forward pass per step (+~33%);
5. full sharding (ZeRO-3 / FSDP): weights gathered every layer, every step;
6. optimizer state (and, fully sharded, weights) offloaded to CPU memory:
   the optimizer step runs on the CPU and states cross PCIe;
7. LoRA instead of full fine-tuning, then QLoRA: a different training method.

``cheapest_fix`` tries each change alone, in that order, and returns the
first that fits; if none does alone, it applies them one after another and
returns the shortest prefix that fits, or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from prefalign.plan.planner import MemoryPlan, PlanRequest, plan_memory
from prefalign.plan.shape import ModelShape
from prefalign.plan.strategies import strategy


@dataclass
class Fix:
    """The changes, in words, the request they give, and its plan."""

    summary: list[str]
    request: PlanRequest
    plan: MemoryPlan


Change = Callable[[PlanRequest], Iterator[tuple[str, PlanRequest]]]


def _precompute_reference(request):
    if request.stage == "dpo" and request.resolved_reference not in ("none", "precomputed"):
        yield "precompute the reference log-probs (reference.precompute=true)", replace(
            request, reference="precomputed")


def _shard_states(request):
    if request.devices > 1 and not strategy(request.strategy).shards_gradients:
        yield "shard optimizer state and gradients (ZeRO-2: --strategy zero2)", replace(
            request, strategy="zero2")


def _smaller_micro_batch(request):
    size, accum = request.batch_size, request.grad_accum
    while size > 1:
        size, accum = size // 2, accum * 2
        summary = (f"micro-batch {size} with grad_accum {accum} (same global batch; "
                   f"train.batch_size={size} train.grad_accum={accum})")
        yield summary, replace(request, batch_size=size, grad_accum=accum)


def _checkpointing(request):
    if not request.checkpointing:
        yield ("activation checkpointing (model.gradient_checkpointing=true, ~33% more compute)",
               replace(request, checkpointing=True))


def _full_shard(request):
    if request.devices > 1 and not strategy(request.strategy).shards_weights:
        yield "full sharding (ZeRO-3 / FSDP: --strategy zero3)", replace(request,
                                                                         strategy="zero3")


def _offload(request):
    current = strategy(request.strategy)
    if not current.offloads_optimizer:
        target = "zero3-offload" if current.shards_weights else "zero2-offload"
        yield f"offload optimizer state to CPU memory (--strategy {target})", replace(
            request, strategy=target)


def _lora(request):
    if request.method == "full":
        yield "LoRA adapters instead of full fine-tuning (model.lora)", replace(
            request, method="lora")
    elif request.method == "lora":
        yield "QLoRA: 4-bit base weights (model.qlora=true, CUDA only)", replace(
            request, method="qlora")


CHANGES: tuple[Change, ...] = (_precompute_reference, _shard_states, _smaller_micro_batch,
                               _checkpointing, _full_shard, _offload, _lora)


def cheapest_fix(shape: ModelShape, request: PlanRequest, limit: float) -> Fix | None:
    """The cheapest change (or shortest run of changes) after which the plan fits ``limit``."""
    for change in CHANGES:
        for summary, changed in change(request):
            plan = plan_memory(shape, changed)
            if plan.fits(limit):
                return Fix([summary], changed, plan)
    summaries, current = [], request
    for change in CHANGES:
        best = None
        for summary, changed in change(current):
            best = (summary, changed)
            if plan_memory(shape, changed).fits(limit):
                break
        if best is None:
            continue
        summaries.append(best[0])
        current = best[1]
        plan = plan_memory(shape, current)
        if plan.fits(limit):
            return Fix(summaries, current, plan)
    return None
