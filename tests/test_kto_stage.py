"""The KTO trainer on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

from prefalign.config import KTOConfig
from prefalign.engine.metrics import read_metrics
from prefalign.stages.kto import mismatched, pairs_to_unpaired, run_kto


def test_pairs_split_into_labelled_rows_and_mismatch_is_cyclic():
    rows = pairs_to_unpaired([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert rows == [{"prompt": "p", "completion": "a", "label": True},
                    {"prompt": "p", "completion": "b", "label": False}]
    examples = [{"prompt_ids": [i], "completion_ids": [10 + i], "label": True} for i in range(3)]
    assert [(e["prompt_ids"], e["completion_ids"]) for e in mismatched(examples)] == \
        [([1], [10]), ([2], [11]), ([0], [12])]


@pytest.mark.parametrize("lora", [True, False], ids=["adapter-reference", "separate-reference"])
def test_kto_trains_from_pairs(tmp_path, tiny_model_dir, preference_file, lora):
    cfg = KTOConfig.model_validate({
        "name": "kto", "output_dir": str(tmp_path), "from_pairs": True,
        "model": {"name": str(tiny_model_dir), "lora": {"r": 4} if lora else None},
        "data": {"train": str(preference_file), "eval_fraction": 0.25, "max_length": 48,
                 "max_prompt_length": 32},
        "train": {"lr": 1e-2, "max_steps": 4, "batch_size": 4, "save_every": 0, "threads": 1},
    })
    result = run_kto(cfg)
    rows = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "loss" in r]
    assert len(rows) == 4
    # At step 1 the policy is the reference: r = 0 and z = 0, so every loss is 1 − σ(0) = 0.5.
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-6)
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert "loss" in result.eval_metrics


def test_kto_honours_max_examples_and_the_leakage_check(tmp_path, tiny_model_dir,
                                                        preference_file):
    from prefalign.errors import PrefalignError

    raw = {"name": "kto-capped", "output_dir": str(tmp_path), "from_pairs": True,
           "model": {"name": str(tiny_model_dir), "lora": {"r": 4}},
           "data": {"train": str(preference_file), "eval_fraction": 0.25, "max_length": 48,
                    "max_prompt_length": 32, "max_examples": 10},
           "train": {"max_steps": 1, "batch_size": 4, "save_every": 0, "threads": 1}}
    run_kto(KTOConfig.model_validate(raw))
    manifest = json.loads((tmp_path / "kto-capped" / "manifest.json").read_text())
    assert manifest["train_examples"] == 20  # 10 pairs, two rows each
    leaky = {**raw, "name": "kto-leaky",
             "data": {**raw["data"], "eval": str(preference_file), "max_examples": None}}
    with pytest.raises(PrefalignError, match="more than one split"):
        run_kto(KTOConfig.model_validate(leaky))
