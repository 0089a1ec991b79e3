"""Checkpoints that a resume can trust.

A checkpoint holds the trainable parameters (adapters only under LoRA), the
optimizer and scheduler states, the RNG states and the step counter, in
``checkpoints/step-<k>/``. It is written to a temp folder and renamed into
place, so a folder named ``step-<k>`` is always complete; older ones beyond
``keep`` are removed only after the new one exists.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from prefalign.errors import PrefalignError

_PREFIX = "step-"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes, detached and contiguous."""
    return {name: p.detach().contiguous().clone()
            for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith(_PREFIX):
            suffix = child.name[len(_PREFIX):]
            if suffix.isdigit() and (child / "trainer_state.json").exists():
                found.append((int(suffix), child))
    return sorted(found)


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    state: dict[str, Any], keep: int) -> Path:
    """Write ``folder/step-<step>`` atomically and prune old checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{_PREFIX}{step}"
    tmp = folder / f".{_PREFIX}{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state()}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore a checkpoint in place; return its trainer state (with ``step``)."""
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise PrefalignError(f"checkpoint {path} does not match the model "
                             f"(unknown parameter {missing[0]}); was the config changed?")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    blob = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    restore_rng_state(blob["rng"])
    return json.loads((path / "trainer_state.json").read_text())
