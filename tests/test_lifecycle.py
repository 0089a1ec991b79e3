"""The stage lifecycle: one reference resolution, the training autocast, main-process outputs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from prefalign.config import ModelConfig, ReferenceConfig, SFTConfig, TrainConfig
from prefalign.errors import ConfigError
from prefalign.models.tiny import tiny_tokenizer
from prefalign.stages.common import load_policy
from prefalign.stages.lifecycle import autocast_context, resolve_reference
from prefalign.stages.sft import run_sft


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2") / "model"
    tokenizer = tiny_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                        n_positions=128, pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _dropout_rates(model: torch.nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]


@pytest.mark.parametrize("keep", [False, True])
def test_separate_reference_is_frozen_and_follows_model_dropout(gpt2_dir, keep):
    model_cfg = ModelConfig(name=str(gpt2_dir), lora=None, dropout=keep)
    policy, _ = load_policy(model_cfg)
    reference = resolve_reference(model_cfg, ReferenceConfig(), policy)
    assert reference.kind == "separate" and reference.lm is not policy
    assert not reference.lm.training
    assert not any(p.requires_grad for p in reference.lm.parameters())
    assert max(_dropout_rates(reference.lm)) == (0.1 if keep else 0.0)
    assert max(_dropout_rates(policy)) == (0.1 if keep else 0.0)


def test_adapter_disabled_reference_switches_the_adapters_off(gpt2_dir):
    model_cfg = ModelConfig(name=str(gpt2_dir), lora={"r": 4, "alpha": 8})
    policy, _ = load_policy(model_cfg)
    reference = resolve_reference(model_cfg, ReferenceConfig(), policy)
    assert reference.kind == "adapter_disabled" and reference.lm is None
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    plain, _ = load_policy(ModelConfig(name=str(gpt2_dir), lora=None))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        adapted = policy(ids).logits
        with reference.context():
            base = policy(ids).logits
        assert not torch.allclose(adapted, base)
        torch.testing.assert_close(base, plain(ids).logits)
    with pytest.raises(ConfigError, match="needs model.lora"):
        resolve_reference(ModelConfig(name=str(gpt2_dir), lora=None),
                          ReferenceConfig(source="adapter_disabled"), policy)
    assert resolve_reference(model_cfg, ReferenceConfig(), policy, needed=False).kind == "none"


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("no", None)])
def test_autocast_context_is_the_training_precision(precision, dtype):
    with autocast_context(TrainConfig(mixed_precision=precision), torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") == (dtype is not None)
        if dtype is not None:
            assert torch.get_autocast_dtype("cpu") == dtype


def test_sft_writes_eval_json_and_figure_through_finish(tmp_path, tiny_model_dir, sft_file):
    cfg = SFTConfig.model_validate({
        "name": "sft", "output_dir": str(tmp_path), "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(sft_file), "eval_fraction": 0.25, "max_length": 48,
                 "max_prompt_length": 32},
        "train": {"max_steps": 2, "batch_size": 4, "save_every": 0, "threads": 1}})
    result = run_sft(cfg)
    written = json.loads((cfg.run_dir / "eval.json").read_text())
    assert written == pytest.approx(result.eval_metrics) and "perplexity" in written
    assert (cfg.run_dir / "figures" / "training.png").is_file()
    assert (cfg.run_dir / "final" / "adapter_config.json").is_file()
