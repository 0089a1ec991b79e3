"""SFT on the chosen replies of preference pairs (``from_pairs: true``)."""

from __future__ import annotations

import json
import math

from prefalign.config import SFTConfig
from prefalign.data.load import load_records
from prefalign.engine.metrics import read_metrics
from prefalign.stages.sft import chosen_as_sft, run_sft


def test_chosen_reply_becomes_the_completion():
    pair = {"prompt": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}]}
    assert chosen_as_sft([pair]) == [{"prompt": pair["prompt"], "completion": pair["chosen"]}]


def test_sft_trains_on_pairs_file(tmp_path, tiny_model_dir, preference_file):
    cfg = SFTConfig.model_validate({
        "name": "sft-pairs", "output_dir": str(tmp_path), "from_pairs": True,
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(preference_file), "eval_fraction": 0.25, "max_length": 48,
                 "max_prompt_length": 32},
        "train": {"lr": 1e-3, "max_steps": 2, "batch_size": 4, "save_every": 0, "threads": 1},
    })
    result = run_sft(cfg)
    rows = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    pairs = load_records(str(preference_file), "preference")
    # One SFT example per pair (not two, as KTO makes), split 3:1 into train and eval.
    assert manifest["train_examples"] + manifest["eval_examples"] == len(pairs)
    assert "perplexity" in result.eval_metrics
