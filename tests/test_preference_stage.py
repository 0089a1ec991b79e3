"""The DPO trainer on a tiny model: reference handling, cache, phases, bad pairs."""

from __future__ import annotations

import json

import pytest
import torch

from prefalign.config import PreferenceConfig
from prefalign.engine.metrics import read_metrics
from prefalign.stages.preference import filter_noisy_pairs, run_preference
from prefalign.stages.reference import ReferenceLogps


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))


def _cfg(tmp_path, model_dir, data_file, name, **extra) -> PreferenceConfig:
    raw = {
        "name": name, "output_dir": str(tmp_path / "runs"),
        "model": {"name": str(model_dir), "lora": {"r": 4, "alpha": 8}},
        "data": {"train": str(data_file), "eval_fraction": 0.25, "max_length": 48,
                 "max_prompt_length": 32},
        "train": {"lr": 1e-2, "max_steps": 4, "batch_size": 4, "save_every": 0, "seed": 0,
                  "threads": 1},
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return PreferenceConfig.model_validate(raw)


def _losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def _ref_passes(run_dir):
    return [r["reference/forward_passes"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "reference/forward_passes" in r]


def test_reference_cache_is_reused_and_invalidated(tmp_path, tiny_model_dir, preference_file,
                                                   capsys):
    first = _cfg(tmp_path, tiny_model_dir, preference_file, "first")
    run_preference(first)
    assert _ref_passes(first.run_dir)[0] > 0
    second = _cfg(tmp_path, tiny_model_dir, preference_file, "second")
    run_preference(second)
    assert _ref_passes(second.run_dir) == [0]
    assert _losses(second.run_dir) == pytest.approx(_losses(first.run_dir), abs=1e-7)
    shorter = _cfg(tmp_path, tiny_model_dir, preference_file, "shorter", data__max_prompt_length=8)
    run_preference(shorter)
    assert _ref_passes(shorter.run_dir)[0] > 0
    fewer = _cfg(tmp_path, tiny_model_dir, preference_file, "fewer", data__max_examples=20)
    run_preference(fewer)
    assert _ref_passes(fewer.run_dir)[0] > 0


def test_precomputed_reference_equals_on_the_fly(tmp_path, tiny_model_dir, preference_file):
    cached = _cfg(tmp_path, tiny_model_dir, preference_file, "cached")
    live = _cfg(tmp_path, tiny_model_dir, preference_file, "live",
                reference={"precompute": False})
    run_preference(cached)
    run_preference(live)
    assert _losses(live.run_dir) == pytest.approx(_losses(cached.run_dir), abs=1e-5)


@pytest.mark.parametrize("loss", ["dpo", "ipo", "ipo_mean", "hinge", "simpo", "orpo", "rpo",
                                  "caldpo", "drdpo", "robust"])
def test_every_loss_trains_without_nan(tmp_path, tiny_model_dir, preference_file, loss):
    cfg = _cfg(tmp_path, tiny_model_dir, preference_file, loss, loss={"name": loss})
    result = run_preference(cfg)
    losses = _losses(cfg.run_dir)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert "rewards/accuracy" in result.eval_metrics
    if loss in ("simpo", "orpo"):
        assert _ref_passes(cfg.run_dir) == []  # reference-free: no reference pass at all
    assert (cfg.run_dir / "final" / "adapter_config.json").exists()
    assert (cfg.run_dir / "figures" / "training.png").stat().st_size > 10_000


def test_dpo_separate_reference_and_full_finetune(tmp_path, tiny_model_dir, preference_file):
    cfg = _cfg(tmp_path, tiny_model_dir, preference_file, "full", model={
        "name": str(tiny_model_dir), "lora": None})
    run_preference(cfg)
    first_row = read_metrics(cfg.run_dir / "metrics.jsonl")[1]
    # At step 1 the policy equals the reference, so the DPO loss is log 2 exactly.
    assert first_row["loss"] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)


def test_phases_run_in_order_with_noisy_filter(tmp_path, tiny_model_dir, preference_file):
    cfg = _cfg(tmp_path, tiny_model_dir, preference_file, "phases", phases=[
        {"epochs": 0.3, "loss": {"beta": 0.05}},
        {"epochs": 0.3, "loss": {"beta": 0.1, "center_logits": True}},
        {"epochs": 0.3, "filter_noisy": 0.25},
    ])
    run_preference(cfg)
    for number in range(3):
        assert json.loads((cfg.run_dir / f"phase-{number}" / "done.json").read_text())["step"] > 0
    assert (cfg.run_dir / "final").exists()


def test_filter_noisy_drops_lowest_reference_margins():
    examples = [{"id": i} for i in range(6)]
    ref = ReferenceLogps(chosen=torch.tensor([0., 5., -3., 2., 1., 0.]),
                         rejected=torch.tensor([1., 0., 0., 0., 0., -4.]))
    kept, kept_ref = filter_noisy_pairs(examples, ref, fraction=1 / 3)
    # margins: -1, 5, -3, 2, 1, 4 → the two lowest are examples 2 and 0
    assert [e["id"] for e in kept] == [1, 3, 4, 5]
    assert kept_ref.chosen.tolist() == [5., 2., 1., 0.]


def test_bad_pairs_are_counted_and_skipped(tmp_path, tiny_model_dir, capsys):
    rows = [{"prompt": f"What is {i} + 1?", "chosen": str(i + 1), "rejected": str(i + 2)}
            for i in range(16)]
    rows[3]["rejected"] = rows[3]["chosen"]                       # identical pair
    rows[5]["prompt"] = "long " * 200                             # prompt fills the limit
    rows[5]["chosen"] = "word " * 200                             # completion truncated away?
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path, tiny_model_dir, path, "bad", data={
        "train": str(path), "eval_fraction": 0.0, "max_length": 40, "max_prompt_length": 40})
    run_preference(cfg)
    out = capsys.readouterr().err
    assert "identical" in out and "skipped" in out
    assert all(torch.isfinite(torch.tensor(_losses(cfg.run_dir))))


def test_filter_noisy_command_keeps_the_right_pairs(tmp_path, tiny_model_dir, preference_file,
                                                    monkeypatch, capsys):
    import sys

    from prefalign.cli import main
    from prefalign.data.load import load_records

    out = tmp_path / "kept.jsonl"
    monkeypatch.setattr(sys, "argv", ["prefalign", "data", "filter-noisy", str(preference_file),
                                      str(out), "--fraction", "0.25",
                                      "--model", str(tiny_model_dir)])
    main()
    kept = load_records(out, "preference")
    original = load_records(preference_file, "preference")
    assert len(kept) == len(original) - 12
    assert all(row in original for row in kept)
    assert "kept 36 of 48" in capsys.readouterr().out


def test_filter_noisy_without_precomputed_reference_is_a_clear_error(tmp_path, tiny_model_dir,
                                                                     preference_file):
    from prefalign.errors import ConfigError

    cfg = _cfg(tmp_path, tiny_model_dir, preference_file, "noisy", filter_noisy=0.2,
               reference__precompute=False)
    with pytest.raises(ConfigError, match="reference.precompute"):
        run_preference(cfg)
    assert not (tmp_path / "runs" / "noisy").exists()


def test_reference_cache_key_sees_every_weight_and_the_library_versions(monkeypatch):
    from importlib import metadata

    from prefalign.stages.reference import model_fingerprint

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    before = model_fingerprint(model)
    with torch.no_grad():  # swap two interior weights: same sum, same first and last values
        weight = model[0].weight.view(-1)
        weight[1000], weight[2000] = weight[2000].clone(), weight[1000].clone()
    swapped = model_fingerprint(model)
    assert swapped != before
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "99.0" if name == "transformers"
                        else real_version(name))
    assert model_fingerprint(model) != swapped


def test_verify_takes_any_task_with_a_verifier(tmp_path, tiny_model_dir, preference_file):
    # GSM8K's verifier reads the final number of the completion and the record's answer,
    # which arithmetic pairs carry
    cfg = _cfg(tmp_path, tiny_model_dir, preference_file, "verified", verify="gsm8k",
               verify_samples=5)
    run_preference(cfg)
    verification = json.loads((cfg.run_dir / "verify.json").read_text())
    assert verification["before"]["n"] == verification["after"]["n"] == 5
    assert 0.0 <= verification["after"]["pass_rate"] <= 1.0


@pytest.mark.parametrize("task, message", [
    ("nope", "verify: unknown task 'nope'"),
    ("countdown", "verify=countdown: held-out record 0 has no 'numbers' field"),
])
def test_verify_with_no_usable_verifier_is_a_clear_error(tmp_path, tiny_model_dir,
                                                        preference_file, task, message):
    from prefalign.errors import ConfigError

    cfg = _cfg(tmp_path, tiny_model_dir, preference_file, "unverified", verify=task)
    with pytest.raises(ConfigError, match=message):
        run_preference(cfg)
    assert not (cfg.run_dir / "final").exists()
