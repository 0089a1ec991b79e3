"""The model card (``README.md``) of an exported model, from its run directory.

Hub-style front matter (``library_name``, ``base_model``, ``tags``), then what
a reader needs to trust and reuse the weights: how to load them, the stage and
its seed, the fingerprints of the training and held-out data, the evaluation
figures the run recorded, the versions that produced it, and the full
resolved config.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefalign.engine.metrics import read_metrics

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def evaluation_figures(run_dir: Path) -> dict[str, float]:
    """``eval.json`` if the stage wrote one, else the last ``eval/`` values in metrics.jsonl."""
    figures = {k: v for k, v in _read_json(run_dir / "eval.json").items()
               if isinstance(v, (int, float))}
    if figures:
        return figures
    for row in read_metrics(run_dir / "metrics.jsonl"):
        for key, value in row.items():
            if key.startswith("eval/") and isinstance(value, (int, float)):
                figures[key[len("eval/"):]] = value
    return figures


def _base_model(model_dir: Path, manifest: dict) -> str | None:
    adapter = _read_json(model_dir / "adapter_config.json")
    base = manifest.get("model_source") or adapter.get("base_model_name_or_path")
    if base == "embedded" or (base and Path(base).name == "smollm2-135m-instruct"):
        return EMBEDDED_HUB_ID
    if base and not base.startswith((".", "/", "~")) and base.count("/") == 1:
        return base
    return None


def model_card(model_dir: Path, run_dir: Path | None, *, merged: bool, parameters: int) -> str:
    """Markdown model card for the model in ``model_dir`` trained in ``run_dir``."""
    manifest = _read_json(run_dir / "manifest.json") if run_dir else {}
    stage = manifest.get("stage", "fine-tuned")
    base = _base_model(model_dir, manifest)
    name = run_dir.name if run_dir else model_dir.name
    front = ["---", "library_name: transformers", f"tags: [prefalign, {stage}]"]
    if base:
        front.append(f"base_model: {base}")
    lines = front + ["---", "", f"# {name}", "",
                     f"A causal language model trained with prefalign ({stage})"
                     + (f" from `{base}`" if base else "") + f"; {parameters:,} parameters."]
    if merged:
        lines.append("LoRA adapters are merged into the weights (W + (α/r)·B·A), so plain "
                     "transformers loads it without peft.")
    lines += ["", "## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "model = AutoModelForCausalLM.from_pretrained(PATH_OR_REPO)",
              "tokenizer = AutoTokenizer.from_pretrained(PATH_OR_REPO)", "```"]
    if manifest:
        lines += ["", "## Training", "", f"- stage: {stage}",
                  f"- seed: {manifest.get('seed')}",
                  f"- model source: {manifest.get('model_source')}",
                  f"- created: {manifest.get('created')}",
                  f"- git revision: {manifest.get('git_revision')}",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in
                                            sorted(manifest.get("versions", {}).items()))]
        prints = manifest.get("dataset_fingerprints", {})
        if prints:
            lines += ["", "## Data", "", "| split | fingerprint |", "|---|---|"]
            lines += [f"| {split} | `{value}` |" for split, value in sorted(prints.items())]
    figures = evaluation_figures(run_dir) if run_dir else {}
    if figures:
        lines += ["", "## Evaluation (held-out)", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {key} | {value:.4g} |" for key, value in sorted(figures.items())]
    config = run_dir / "config.yaml" if run_dir else None
    if config is not None and config.is_file():
        lines += ["", "## Configuration", "", "```yaml", config.read_text().rstrip(), "```"]
    return "\n".join(lines) + "\n"
