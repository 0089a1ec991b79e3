"""Step-0 invariants of the offline stages on a tiny model with dropout, under bf16 autocast.

At the first step the policy equals its reference, so every implicit reward is
0: the DPO loss is −log σ(0) = ln 2, KTO's is 1 − σ(0) = 1/2 with KL anchor 0.
That holds only if dropout is off in the policy and the reference (bug: a
GPT-2 with dropout gave 0.6919) and if the reference log-probs are computed
under the same autocast as the training step (bug: a precomputed fp32
reference against a bf16 policy).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from prefalign.config import KTOConfig, PreferenceConfig
from prefalign.models.tiny import tiny_tokenizer
from prefalign.stages.kto import run_kto
from prefalign.stages.preference import run_preference
from prefalign.tasks import arithmetic

LORA = {"r": 4, "alpha": 8, "dropout": 0.1}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def gpt2_with_dropout(tmp_path_factory):
    """A tiny GPT-2 whose config keeps GPT-2's dropout (0.1 on embeddings, residuals,
    attention)."""
    path = tmp_path_factory.mktemp("gpt2") / "model"
    tokenizer = tiny_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                        n_positions=256, pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.1
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n"
                            for r in arithmetic.preference_records(24, seed=1)))
    return path


def _raw(tmp_path, model, data, name, lora, precision="bf16", **extra):
    raw = {"name": name, "output_dir": str(tmp_path / "runs"),
           "model": {"name": str(model), "lora": lora},
           "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 48,
                    "max_prompt_length": 32},
           "train": {"max_steps": 1, "batch_size": 4, "save_every": 0, "threads": 1,
                     "mixed_precision": precision}}
    for key, value in extra.items():
        section, _, field = key.partition("__")
        raw.setdefault(section, {})[field] = value
    return raw


def _first_step(run, cfg) -> dict:
    rows = []
    run(cfg, on_step_end=lambda step, metrics: rows.append(metrics))
    return rows[0]


@pytest.mark.parametrize("precompute", [True, False], ids=["precomputed", "on-the-fly"])
@pytest.mark.parametrize("lora", [LORA, None], ids=["lora-dropout", "full-separate"])
def test_dpo_loss_at_step_0_is_ln2_with_dropout_and_bf16(tmp_path, gpt2_with_dropout, pairs,
                                                         lora, precompute):
    cfg = PreferenceConfig.model_validate(_raw(tmp_path, gpt2_with_dropout, pairs, "dpo", lora,
                                               reference__precompute=precompute))
    metrics = _first_step(run_preference, cfg)
    assert abs(metrics["loss"] - math.log(2)) < 1e-6
    assert abs(metrics["rewards/margin"]) < 1e-6


def test_precomputed_reference_runs_under_the_training_autocast(tmp_path, tiny_model_dir,
                                                                pairs):
    """No dropout here: only the precision differs between reference and policy."""
    raw = _raw(tmp_path, tiny_model_dir, pairs, "bf16", {"r": 4, "alpha": 8},
               reference__precompute=True)
    metrics = _first_step(run_preference, PreferenceConfig.model_validate(raw))
    assert abs(metrics["loss"] - math.log(2)) < 1e-6


@pytest.mark.parametrize("precompute", [True, False], ids=["precomputed", "on-the-fly"])
@pytest.mark.parametrize("lora", [LORA, None], ids=["lora-dropout", "full-separate"])
def test_kto_loss_at_step_0_is_one_half_with_dropout_and_bf16(tmp_path, gpt2_with_dropout,
                                                              pairs, lora, precompute):
    raw = _raw(tmp_path, gpt2_with_dropout, pairs, "kto", lora, reference__precompute=precompute)
    metrics = _first_step(run_kto, KTOConfig.model_validate({**raw, "from_pairs": True}))
    assert abs(metrics["loss"] - 0.5) < 1e-6
    assert metrics["kl"] == 0.0


def test_model_dropout_true_keeps_dropout(tmp_path, gpt2_with_dropout, pairs):
    from prefalign.config import ModelConfig
    from prefalign.stages.common import load_policy

    lm, _ = load_policy(ModelConfig(name=str(gpt2_with_dropout), lora=LORA, dropout=True))
    rates = [m.p for m in lm.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates and max(rates) == pytest.approx(0.1)
    raw = _raw(tmp_path, gpt2_with_dropout, pairs, "kept", LORA, precision="no",
               model__dropout=True)
    metrics = _first_step(run_preference, PreferenceConfig.model_validate(raw))
    assert abs(metrics["loss"] - math.log(2)) > 1e-4
