"""Real-model runs on the embedded SmolLM2-135M-Instruct (marked slow)."""

from __future__ import annotations

import math

import pytest

from prefalign.config import PreferenceConfig, SFTConfig
from prefalign.engine.metrics import read_metrics
from prefalign.stages.preference import run_preference
from prefalign.stages.sft import run_sft

pytestmark = pytest.mark.slow


def test_sft_on_embedded_lowers_held_out_loss(tmp_path):
    cfg = SFTConfig.model_validate({
        "name": "sft", "output_dir": str(tmp_path),
        "data": {"train": "builtin:arithmetic?n=96&seed=3", "eval_fraction": 0.25,
                 "max_length": 64, "max_prompt_length": 48},
        "train": {"lr": 5e-4, "max_steps": 8, "batch_size": 8, "eval_every": 8,
                  "save_every": 0, "warmup_ratio": 0.0},
    })
    result = run_sft(cfg)
    rows = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "eval/loss" in r]
    assert rows[0]["step"] == 0  # evaluated before any update
    evals = [r["eval/loss"] for r in rows]
    assert result.eval_metrics["loss"] < evals[0] - 0.1, evals


@pytest.mark.parametrize("loss", ["dpo", "simpo"])
def test_preference_losses_run_on_embedded(tmp_path, loss):
    cfg = PreferenceConfig.model_validate({
        "name": loss, "output_dir": str(tmp_path), "loss": {"name": loss},
        "data": {"train": "builtin:arithmetic?n=40&seed=5", "eval_fraction": 0.2,
                 "max_length": 64, "max_prompt_length": 48},
        "train": {"lr": 5e-4, "max_steps": 2, "batch_size": 4, "save_every": 0},
    })
    result = run_preference(cfg)
    assert math.isfinite(result.eval_metrics["loss"])
    assert (cfg.run_dir / "final" / "adapter_model.safetensors").exists()
