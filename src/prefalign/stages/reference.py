"""Reference log-probs: computed once per dataset, cached on disk, reused.

The DPO family compares the policy with a frozen reference π_ref on the same
pairs. π_ref never changes during training, so ``log π_ref(y|x)`` for every
chosen and rejected completion is computed once, in batched no-grad passes,
and stored in ``$PREFALIGN_CACHE/reference_logps/<key>.safetensors``. The key
hashes the reference model's weights and config with the exact token ids of
every example, so it changes with the model, the tokenizer or chat template,
the data, and the length limits — and a sweep over β or the loss pays for the
reference once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prefalign.data.collate import collate_preference
from prefalign.models.embedded import cache_root
from prefalign.stages.common import to_device


def model_fingerprint(model: torch.nn.Module) -> str:
    """A content hash of a model: its config plus every parameter's shape, sum and ends.

    LoRA parameters are left out: with adapters disabled the model computes the
    same function whatever their values.
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                continue
            flat = param.detach().reshape(-1)
            digest.update(name.encode())
            digest.update(str(tuple(param.shape)).encode())
            digest.update(repr(float(flat.double().sum())).encode())
            digest.update(flat[:64].float().numpy().tobytes())
            digest.update(flat[-64:].float().numpy().tobytes())
    return digest.hexdigest()[:24]


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


def cache_dir() -> Path:
    return cache_root() / "reference_logps"


@torch.no_grad()
def compute_reference_logps(model: torch.nn.Module, examples: list[dict], pad_id: int,
                            batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batched no-grad passes of ``model`` (a CompletionLogprobModel) over all pairs."""
    device = next(model.parameters()).device
    chosen, rejected, passes = [], [], 0
    was_training = model.training
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = to_device(collate_preference(examples[start:start + batch_size], pad_id), device)
        logps = model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        sums = (logps * batch["completion_mask"]).sum(-1).float().cpu()
        half = sums.shape[0] // 2
        chosen.append(sums[:half])
        rejected.append(sums[half:])
        passes += 1
    model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected), passes


def reference_logps(model: torch.nn.Module, examples: list[dict], pad_id: int,
                    batch_size: int, use_cache: bool = True) -> ReferenceLogps:
    """π_ref log-probs for ``examples``, from the disk cache when the key matches."""
    if not examples:
        empty = torch.zeros(0)
        return ReferenceLogps(empty, empty)
    key = f"{model_fingerprint(model)}-{examples_fingerprint(examples)}"
    path = cache_dir() / f"{key}.safetensors"
    if use_cache and path.exists():
        stored = load_file(str(path))
        return ReferenceLogps(stored["chosen"], stored["rejected"], 0, path, True)
    chosen, rejected, passes = compute_reference_logps(model, examples, pad_id, batch_size)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(tmp))
        tmp.replace(path)
    return ReferenceLogps(chosen, rejected, passes, path if use_cache else None, False)
