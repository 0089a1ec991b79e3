"""Sharding strategies: which model states each device holds, and which go to CPU.

With Ψ parameters, N devices and K bytes of optimizer state per parameter,
the per-device model states of the ZeRO paper (Rajbhandari et al. 2020, §5,
Figure 1) for half-precision weights and gradients are:

* ``none``/``ddp`` (every device a full replica): ``(2 + 2 + K)·Ψ``;
* ``zero1`` (P_os, optimizer state partitioned): ``2Ψ + 2Ψ + K·Ψ/N``;
* ``zero2`` (P_os+g, gradients too): ``2Ψ + (2 + K)·Ψ/N``;
* ``zero3`` = ``fsdp`` full shard (P_os+g+p, weights too): ``(2 + 2 + K)·Ψ/N``.

Two costs come with the sharding and are counted too:

* PyTorch DDP keeps its gradient buckets as a second copy of the gradients
  (``gradient_as_bucket_view=False``, Accelerate's default) when N > 1;
* full sharding must gather each unit's full weights just in time: FSDP
  wraps every decoder layer and, with backward prefetch, holds two layers'
  weights at once; the root unit (embeddings, final norm, LM head) is
  gathered whole when used. The larger of the two is resident at a time.

Offload (ZeRO-Offload, Ren et al. 2021; ZeRO-Infinity, Rajbhandari et al.
2021; FSDP ``CPUOffload``) moves the optimizer state — and with ``*-offload``
of a full shard, the weights — into host memory, where the optimizer step runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.plan.registry import lookup


@dataclass(frozen=True)
class Strategy:
    name: str
    shards_optimizer: bool = False
    shards_gradients: bool = False
    shards_weights: bool = False
    offloads_optimizer: bool = False
    offloads_weights: bool = False
    replica_buckets: bool = False
    summary: str = ""


STRATEGIES: dict[str, Strategy] = {
    "none": Strategy("none", summary="one device, or replicas without sharding"),
    "ddp": Strategy("ddp", replica_buckets=True,
                    summary="data parallel: a full replica per device"),
    "zero1": Strategy("zero1", shards_optimizer=True,
                      summary="ZeRO-1: optimizer state sharded"),
    "zero2": Strategy("zero2", shards_optimizer=True, shards_gradients=True,
                      summary="ZeRO-2: optimizer state and gradients sharded"),
    "zero3": Strategy("zero3", shards_optimizer=True, shards_gradients=True,
                      shards_weights=True,
                      summary="ZeRO-3: weights, gradients and optimizer state sharded"),
    "fsdp": Strategy("fsdp", shards_optimizer=True, shards_gradients=True,
                     shards_weights=True, summary="FSDP full shard (as ZeRO-3)"),
    "zero2-offload": Strategy("zero2-offload", shards_optimizer=True, shards_gradients=True,
                              offloads_optimizer=True,
                              summary="ZeRO-2 with the optimizer state in CPU memory"),
    "zero3-offload": Strategy("zero3-offload", shards_optimizer=True, shards_gradients=True,
                              shards_weights=True, offloads_optimizer=True,
                              offloads_weights=True,
                              summary="ZeRO-3 with weights and optimizer state in CPU memory"),
    "fsdp-offload": Strategy("fsdp-offload", shards_optimizer=True, shards_gradients=True,
                             shards_weights=True, offloads_optimizer=True,
                             offloads_weights=True,
                             summary="FSDP full shard with CPU offload"),
}


def strategy(name: str) -> Strategy:
    """The strategy called ``name`` (a ``ConfigError`` listing valid names otherwise)."""
    return lookup("sharding strategy", name, STRATEGIES)
