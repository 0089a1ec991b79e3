"""Checkpoints of a sharded run (FSDP, DeepSpeed ZeRO): every rank writes its shard.

Under FSDP and ZeRO no single process holds the whole model or optimizer, so
the per-rank state goes through Accelerate's ``save_state``/``load_state``
(weights, optimizer shards, registered scheduler, per-rank RNG). The layout and
the guarantees match ``checkpoint.py``: everything lands in a temp folder,
rank 0 writes ``trainer_state.json`` last and renames the folder to
``step-<k>``, so a folder with that name is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from prefalign.engine import distributed
from prefalign.engine.checkpoint import list_checkpoints


def save_sharded_checkpoint(accelerator: Accelerator, folder: Path, step: int,
                            state: dict[str, Any], keep: int) -> Path:
    """Collective: all ranks write their shards into ``folder/step-<step>``."""
    final = folder / f"step-{step}"
    tmp = folder / f".step-{step}.tmp"
    if distributed.is_main_process():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    distributed.barrier()
    accelerator.save_state(str(tmp))
    distributed.barrier()
    if distributed.is_main_process():
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final


def load_sharded_checkpoint(accelerator: Accelerator, path: Path) -> dict[str, Any]:
    """Collective: restore every rank's shard; return the trainer state (with ``step``)."""
    accelerator.load_state(str(path))
    return json.loads((path / "trainer_state.json").read_text())
