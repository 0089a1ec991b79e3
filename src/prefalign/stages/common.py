"""Pieces every training stage shares: run directory, data, model, batch plan."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

from prefalign.config import DataConfig, ModelConfig, RunConfig
from prefalign.data.collate import length_grouped_batches
from prefalign.data.load import dataset_fingerprint
from prefalign.data.mixture import mix
from prefalign.data.schema import Required
from prefalign.data.split import HELD_OUT_SALT, check_leakage, split_records
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.rundir import RunDir
from prefalign.errors import PrefalignError
from prefalign.models.dropout import disable_dropout
from prefalign.models.load import load_model
from prefalign.tasks import content_key, load_source, prompt_key


def _has_progress(run: RunDir, allow_phases: bool) -> bool:
    if list_checkpoints(run.checkpoints):
        return True
    return allow_phases and any(list_checkpoints(p / "checkpoints") or (p / "done.json").exists()
                                for p in run.root.glob("phase-*"))


def prepare_run(cfg: RunConfig, resume: bool, allow_phases: bool = False) -> RunDir:
    """Create the run directory; refuse to silently overwrite a run in progress."""
    run = RunDir(cfg.run_dir)
    return start_run(run, cfg, resume, _has_progress(run, allow_phases))


def start_run(run: RunDir, cfg: RunConfig, resume: bool, progress: bool) -> RunDir:
    """Create ``run`` and save ``cfg`` in it, unless that would overwrite a run in
    progress (``progress`` without ``resume``) or resume nothing."""
    if not resume and progress:
        raise PrefalignError(f"{run.root} already has checkpoints: pass --resume to continue "
                             f"that run, or choose another name=")
    if resume and not progress:
        raise PrefalignError(f"nothing to resume: {run.root} has no checkpoint")
    run.create()
    run.write_config(cfg)
    return run


def _split_source(records: list[dict], source: str, data: DataConfig, kind: str, seed: int,
                  held_out: list[dict] | None) -> tuple[list[dict], list[dict]]:
    """A source's training records and the held-out share split off it by its content key
    (none when ``held_out``, the ``data.eval`` records, is given: then checked for leakage)."""
    key = content_key(source, kind)
    if held_out is not None:
        check_leakage({"train": records, "eval": held_out}, key)
        return records, []
    if data.eval_fraction > 0:
        parts = split_records(records, {"train": 1 - data.eval_fraction,
                                        "eval": data.eval_fraction}, seed, key,
                              salt=HELD_OUT_SALT)
        return parts["train"], parts["eval"]
    return records, []


def load_train_eval(data: DataConfig, kind: str, seed: int,
                    require: Required | None = None) -> tuple[list[dict], list[dict]]:
    """Training and held-out records. Held-out records come from ``data.eval`` or are
    ``eval_fraction`` split off; either way no held-out record shares its content key
    with a training one: the training source's task's content key (a problem, whatever
    its wording or order of operands), else the prompt. ``require``: fields every record
    must carry (``{field: why}``), else a ``DataError`` naming file, line and field.

    A weighted mixture (``data.train`` a list of ``{source, weight}``): each source is
    split by its own content key first, the held-out shares pooled; the training shares
    are mixed (``prefalign.data.mixture``) into ``data.max_examples`` records, or as
    many as they hold together, seeded by ``seed``; held-out and mixed training records
    share no prompt either, across sources."""
    mixture = [(data.train, 1.0)] if isinstance(data.train, str) else \
        [(part.source, part.weight) for part in data.train]
    loaded = [load_source(source, kind, require) for source, _ in mixture]
    given = load_source(data.eval, kind, require) if data.eval is not None else None
    parts = [_split_source(records, source, data, kind, seed, given)
             for records, (source, _) in zip(loaded, mixture)]
    held_out = given if given is not None else [r for _, split_off in parts for r in split_off]
    if isinstance(data.train, str):
        train = parts[0][0][: data.max_examples]
    else:
        shares = [train_part for train_part, _ in parts]
        train = mix(shares, [weight for _, weight in mixture],
                    data.max_examples or sum(map(len, shares)), seed,
                    names=[source for source, _ in mixture])
        check_leakage({"train": train, "eval": held_out}, prompt_key)
    if not train:
        raise PrefalignError(f"{data.train_name}: no training records")
    return train, held_out


def fingerprints(**named: list[dict]) -> dict[str, str]:
    return {name: dataset_fingerprint(records) for name, records in named.items() if records}


def load_policy(model_cfg: ModelConfig):
    """The trainable model (with LoRA if configured) and its tokenizer; dropout off
    unless ``model.dropout``."""
    model, tokenizer = load_model(model_cfg.name, dtype=model_cfg.dtype, lora=model_cfg.lora,
                                  qlora=model_cfg.qlora)
    if not model_cfg.dropout:
        disable_dropout(model)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    return model, tokenizer


class BatchPlan:
    """Length-bucketed batches of example indices, a pure function of (seed, epoch)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int,
                 collate: Callable[[list[int]], Any]):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.collate = collate
        self._plan = lru_cache(maxsize=2)(self._make_plan)

    def _make_plan(self, epoch: int) -> list[list[int]]:
        return length_grouped_batches(self.lengths, self.batch_size, seed=self.seed + epoch)

    def num_batches(self, epoch: int) -> int:
        return len(self._plan(epoch))

    def batch(self, epoch: int, index: int) -> Any:
        return self.collate(self._plan(epoch)[index])


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
