"""Export: merged LoRA weights load in plain transformers and compute the same function."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from prefalign.cli import main
from prefalign.config import SFTConfig
from prefalign.errors import ModelError, PrefalignError
from prefalign.export import export_model, push_to_hub
from prefalign.export import hub as hub_module
from prefalign.models.load import load_model
from prefalign.models.lora import LoraSettings
from prefalign.models.save import save_model
from prefalign.stages.sft import run_sft

PROMPTS = ["What is 12 + 7?", "How do I bake bread?", "goto(yellow key) then open(red door)"]


def _prompt_ids(tokenizer, prompt: str) -> torch.Tensor:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt").input_ids


@pytest.fixture
def adapter_dir(tmp_path, tiny_model_dir):
    """A saved LoRA adapter whose B matrices are far from zero, so merging changes weights."""
    model, tokenizer = load_model(str(tiny_model_dir), lora=LoraSettings(
        r=4, alpha=8, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    save_model(model, tokenizer, tmp_path / "adapter")
    return tmp_path / "adapter", model.eval(), tokenizer


def test_merged_model_loads_plainly_and_matches_the_adapter_model(tmp_path, adapter_dir,
                                                                  tiny_model_dir):
    folder, adapter_model, tokenizer = adapter_dir
    result = export_model(folder, tmp_path / "merged")
    assert result.merged_adapter
    merged_dir = tmp_path / "merged"
    assert (merged_dir / "model.safetensors").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for prompt in PROMPTS:
        ids = _prompt_ids(tokenizer, prompt)
        with torch.no_grad():
            expected = adapter_model(input_ids=ids).logits
            got = merged(input_ids=ids).logits
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
            # The adapters matter: the base model computes something else.
            assert (base(input_ids=ids).logits - expected).abs().max() > 1e-2
            kwargs = {"max_new_tokens": 8, "do_sample": False,
                      "pad_token_id": tokenizer.pad_token_id}
            assert torch.equal(merged.generate(ids, **kwargs),
                               adapter_model.generate(input_ids=ids, **kwargs))


def test_export_of_a_run_writes_a_model_card(tmp_path, tiny_model_dir, sft_file):
    cfg = SFTConfig.model_validate({
        "name": "card", "output_dir": str(tmp_path / "runs"),
        "model": {"name": str(tiny_model_dir), "lora": {"r": 4, "alpha": 8}},
        "data": {"train": str(sft_file), "eval_fraction": 0.2, "max_length": 48,
                 "max_prompt_length": 32},
        "train": {"max_steps": 2, "batch_size": 4, "save_every": 0, "threads": 1}})
    result = run_sft(cfg)
    export_model(cfg.run_dir, tmp_path / "exported")
    card = (tmp_path / "exported" / "README.md").read_text()
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\ntags: [prefalign, sft]\n")
    for split, fingerprint in manifest["dataset_fingerprints"].items():
        assert f"| {split} | `{fingerprint}` |" in card
    assert f"| loss | {result.eval_metrics['loss']:.4g} |" in card
    assert "## Configuration" in card and "name: card" in card
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "exported") is not None


def test_export_command(tmp_path, adapter_dir, monkeypatch, capsys):
    folder, _, _ = adapter_dir
    monkeypatch.setattr(sys, "argv", ["prefalign", "export", str(folder), "--out",
                                      str(tmp_path / "cli")])
    main()
    assert capsys.readouterr().out.startswith("exported merged LoRA adapters")
    assert (tmp_path / "cli" / "README.md").is_file()
    monkeypatch.setattr(sys, "argv", ["prefalign", "export", str(tmp_path / "nowhere"),
                                      "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: nothing to export")


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        export_model(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="nothing to export"):
        export_model(tmp_path / "empty", tmp_path / "out")


def test_push_needs_a_token_and_uploads_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    with pytest.raises(PrefalignError, match="needs a token"):
        push_to_hub(tmp_path, "me/model")
    with pytest.raises(PrefalignError, match="owner/name"):
        push_to_hub(tmp_path, "model", token="t")

    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, folder_path))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = hub_module.push_to_hub(tmp_path, "me/model", token="secret", private=True)
    assert url == "https://huggingface.co/me/model"
    assert calls == [("token", "secret"), ("create", "me/model", True, True),
                     ("upload", "me/model", str(tmp_path))]
