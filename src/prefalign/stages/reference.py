"""Reference log-probs: computed once per dataset, cached on disk, reused.

The DPO family compares the policy with a frozen reference π_ref on the same
pairs. π_ref never changes during training, so ``log π_ref(y|x)`` for every
chosen and rejected completion is computed once, in batched no-grad passes,
and stored in ``$PREFALIGN_CACHE/reference_logps/<key>.safetensors``. The key
hashes the reference model's weights (every byte), config and library versions
(``prefalign.models.fingerprint``) with the exact token ids of every example
and the autocast precision the pass ran under, so it changes with the model,
the tokenizer or chat template, the data, the length limits and
``train.mixed_precision`` — and a sweep over β or the loss pays for the
reference once. Callers run the pass under the autocast of training
(``Lifecycle.autocast``), so that cached values equal the ones a training
step would compute.

Under several processes the pass is computed once for the whole job: the
batches are dealt round-robin to the ranks, each rank runs its share, the
sums are gathered back into dataset order on every rank, and rank 0 alone
writes the cache. Each batch keeps the composition it has in a single
process, so the gathered values equal the single-process ones.

The passes take pairs longest first, so each batch pads little, and by default
lay each pair out as one prefix-shared row (``prefalign.data.collate_shared``):
the prompt is computed once for chosen and rejected. Both layouts give the same
log-probs (up to float rounding), so the cache key does not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prefalign.data.collate import collate_preference
from prefalign.data.collate_shared import (
    collate_preference_shared,
    shared_row_length,
    split_shared_sums,
)
from prefalign.engine import distributed
from prefalign.models.embedded import cache_root
from prefalign.models.fingerprint import model_fingerprint
from prefalign.models.token_logprobs import supports_mask_4d
from prefalign.stages.common import to_device


def examples_fingerprint(examples: list[dict]) -> str:
    """Hash of the exact token ids of every example (data, tokenizer, lengths)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]])
                      .encode())
    return digest.hexdigest()[:24]


@dataclass
class ReferenceLogps:
    """Sequence log-prob sums under π_ref, one entry per example."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    forward_passes: int = 0
    cache_path: Path | None = None
    from_cache: bool = False


def precision_tag(device: torch.device) -> str:
    """``""`` outside autocast, else ``-autocast-<dtype>`` for the active autocast."""
    if not torch.is_autocast_enabled(device.type):
        return ""
    return f"-autocast-{str(torch.get_autocast_dtype(device.type)).replace('torch.', '')}"


def cache_dir() -> Path:
    return cache_root() / "reference_logps"


def pair_logps(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Summed completion log-probs of every pair: chosen ``[B]`` then rejected ``[B]``,
    then, when the batch carries reference samples (``sample_lengths``), the samples ``[B]``.

    ``model`` is a ``CompletionLogprobModel``; ``batch`` comes from
    ``collate_preference`` (one row per completion) or ``collate_preference_shared``
    (``B`` prefix-shared rows, recognised by its ``segment_ids``). Shape ``[2B]`` or ``[3B]``.
    """
    if "segment_ids" in batch:
        logps = model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                      batch["position_ids"], batch["predictor_positions"])
        return split_shared_sums(logps, batch["segment_ids"], "sample_lengths" in batch)
    logps = model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    return (logps * batch["completion_mask"]).sum(-1)


@torch.no_grad()
def _batch_sums(model: torch.nn.Module, examples: list[dict], pad_id: int, batch_size: int,
                batch_numbers: list[int], prefix_sharing: bool) -> list[tuple[int, torch.Tensor]]:
    """``(batch number, [2, B] chosen/rejected sums)`` for the listed batches."""
    device = next(model.parameters()).device
    collate = collate_preference_shared if prefix_sharing else collate_preference
    out = []
    was_training = model.training
    model.eval()
    for number in batch_numbers:
        start = number * batch_size
        batch = to_device(collate(examples[start:start + batch_size], pad_id), device)
        sums = pair_logps(model, batch).float().cpu()
        out.append((number, sums.view(2, -1)))
    model.train(was_training)
    return out


def compute_reference_logps(model: torch.nn.Module, examples: list[dict], pad_id: int,
                            batch_size: int, prefix_sharing: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batched no-grad passes of ``model`` (a CompletionLogprobModel) over all pairs.

    Pairs are batched longest first (little padding) and, with ``prefix_sharing``
    and a model whose attention takes a custom mask, laid out one prefix-shared
    row per pair. Returns chosen sums ``[N]``, rejected sums ``[N]`` in the order
    of ``examples``, and the number of forward passes run by the whole job. Under
    several processes each rank runs every N-th batch and the results are
    gathered, in order, on every rank.
    """
    sharing = prefix_sharing and supports_mask_4d(model)
    order = sorted(range(len(examples)), key=lambda i: -shared_row_length(examples[i]))
    by_length = [examples[i] for i in order]
    batches = -(-len(examples) // batch_size)
    mine = distributed.shard_indices(batches, distributed.rank(), distributed.world_size())
    shards = distributed.all_gather_objects(_batch_sums(model, by_length, pad_id, batch_size,
                                                        mine, sharing))
    ordered = distributed.concat_in_order(shards)
    index = torch.tensor(order, dtype=torch.long)
    chosen, rejected = torch.empty(len(examples)), torch.empty(len(examples))
    chosen[index] = torch.cat([sums[0] for sums in ordered])
    rejected[index] = torch.cat([sums[1] for sums in ordered])
    return chosen, rejected, len(ordered)


def _write_cache(path: Path, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(tmp))
    tmp.replace(path)


def reference_logps(model: torch.nn.Module, examples: list[dict], pad_id: int,
                    batch_size: int, use_cache: bool = True,
                    prefix_sharing: bool = True) -> ReferenceLogps:
    """π_ref log-probs for ``examples``, from the disk cache when the key matches."""
    if not examples:
        empty = torch.zeros(0)
        return ReferenceLogps(empty, empty)
    distributed.ensure_process_group()
    key = (f"{model_fingerprint(model)}-{examples_fingerprint(examples)}"
           f"{precision_tag(next(model.parameters()).device)}")
    path = cache_dir() / f"{key}.safetensors"
    # Rank 0 decides, so that every rank takes the same branch.
    if distributed.broadcast_object(use_cache and path.exists()):
        stored = load_file(str(path))
        return ReferenceLogps(stored["chosen"], stored["rejected"], 0, path, True)
    chosen, rejected, passes = compute_reference_logps(model, examples, pad_id, batch_size,
                                                       prefix_sharing)
    if use_cache and distributed.is_main_process():
        _write_cache(path, chosen, rejected)
    distributed.barrier()
    return ReferenceLogps(chosen, rejected, passes, path if use_cache else None, False)
