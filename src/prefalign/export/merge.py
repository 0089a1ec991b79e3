"""Merge LoRA adapters into full weights and write a self-contained model folder.

A LoRA-adapted projection computes ``W x + (α/r)·B A x``; merging replaces
``W`` by ``W + (α/r)·B A`` (Hu et al. 2021, §4.1), after which the model is a
plain transformers model: ``AutoModelForCausalLM.from_pretrained(folder)``
loads it with no peft and no prefalign, and it computes the same function as
the adapter model. The folder holds safetensors weights, the tokenizer, and a
``README.md`` model card (``card.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefalign.engine.rundir import atomic_write_text
from prefalign.errors import ModelError
from prefalign.export.card import model_card
from prefalign.models.heads import HEAD_CONFIG


@dataclass
class ExportResult:
    out_dir: Path
    source: Path
    merged_adapter: bool
    parameters: int
    pushed_to: str | None = None


def find_model_dir(source: str | Path) -> tuple[Path, Path | None]:
    """``(model folder, run folder or None)`` for a run directory or a model folder."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelError(f"nothing to export: {path} does not exist")
    if (path / "final").is_dir():
        return path / "final", path
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        run = path.parent if (path.parent / "config.yaml").is_file() else None
        return path, run
    raise ModelError(f"nothing to export in {path}: expected a run directory (with final/) "
                     f"or a model folder (with config.json or adapter_config.json)")


def export_model(source: str | Path, out_dir: str | Path, *, dtype: str = "auto",
                 push_to: str | None = None, token: str | None = None,
                 private: bool = False) -> ExportResult:
    """Write ``source`` (run directory or model folder) as full weights to ``out_dir``.

    LoRA adapters are merged; a full model is re-saved as is. With ``push_to``
    (a Hub repo id) the folder is uploaded (``hub.py``).
    """
    from prefalign.models.load import is_adapter_dir, load_model
    from prefalign.models.save import save_model

    model_dir, run_dir = find_model_dir(source)
    if (model_dir / HEAD_CONFIG).is_file():
        raise ModelError(f"{model_dir} holds a reward/value model (a scalar head); export "
                         f"writes language models for AutoModelForCausalLM")
    adapter = is_adapter_dir(str(model_dir))
    model, tokenizer = load_model(str(model_dir), dtype=dtype, device="cpu", lora=None)
    out = save_model(model, tokenizer, out_dir)
    parameters = sum(p.numel() for p in model.parameters())
    atomic_write_text(out / "README.md", model_card(model_dir, run_dir, merged=adapter,
                                                     parameters=parameters))
    result = ExportResult(out, model_dir, adapter, parameters)
    if push_to is not None:
        from prefalign.export.hub import push_to_hub

        result.pushed_to = push_to_hub(out, push_to, token=token, private=private)
    return result
