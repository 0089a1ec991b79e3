"""Reward-model commands end to end on a tiny model: train, evaluate, filter, flywheel,
composite scoring, and one clear line for bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import write_jsonl

from prefalign.cli import main
from prefalign.errors import ConfigError
from prefalign.stages.reward_filter import select_by_margin

HH_PAIRS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hh-rlhf-harmless" \
    / "pairs.jsonl"


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prefalign", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, err: str, fragment: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def _train_frozen(monkeypatch, capsys, tmp_path, model_dir, data, name="rm", *extra) -> Path:
    code, out, err = run_cli(monkeypatch, capsys, "rm", f"model.name={model_dir}",
                             f"data.train={data}", f"output_dir={tmp_path / 'runs'}",
                             f"name={name}", "tuning=frozen", "train.max_steps=4",
                             "train.save_every=0", "train.lr=1e-2", *extra)
    assert code == 0, err
    assert "done: 4 steps" in out
    return tmp_path / "runs" / name


def test_train_evaluate_and_filter_from_the_command_line(monkeypatch, capsys, tmp_path,
                                                         tiny_model_dir, preference_file):
    run_dir = _train_frozen(monkeypatch, capsys, tmp_path, tiny_model_dir, preference_file)
    code, out, err = run_cli(monkeypatch, capsys, "eval", "rm", "--model",
                             str(run_dir / "final"), "--data", str(preference_file),
                             "--probe-limit", "5")
    assert code == 0, err
    assert "accuracy" in out and "filler paragraph" in out
    result = json.loads((run_dir / "rm_eval.json").read_text())
    assert result["pairs"] == 48 and result["filler_probe"]["responses"] == 10
    assert len(result["calibration_bins"]) == 10
    for name in ("rm_score_histogram.png", "rm_reliability.png"):
        assert (run_dir / "figures" / name).read_bytes()[:4] == b"\x89PNG"

    kept = tmp_path / "kept.jsonl"
    code, out, err = run_cli(monkeypatch, capsys, "data", "filter-by-rm", str(preference_file),
                             str(kept), "--model", str(run_dir / "final"), "--keep", "0.25",
                             "--by", "margin")
    assert code == 0, err
    assert len(kept.read_text().splitlines()) == 12 and "kept 12 of 48" in out


def test_filter_selects_the_largest_margins_by_hand():
    margins = torch.tensor([0.5, -3.0, 2.0, 0.1, -0.2, 1.0])
    assert select_by_margin(margins, 0.5, "abs_margin") == [1, 2, 5]
    assert select_by_margin(margins, 0.5, "margin") == [0, 2, 5]
    assert select_by_margin(margins, 0.01, "margin") == [2]
    with pytest.raises(ConfigError, match="keep"):
        select_by_margin(margins, 0.0, "margin")
    with pytest.raises(ConfigError, match="unknown filter key"):
        select_by_margin(margins, 0.5, "size")


def test_flywheel_reports_held_out_accuracy_per_cycle(monkeypatch, capsys, tmp_path,
                                                      tiny_model_dir, preference_file):
    code, out, err = run_cli(monkeypatch, capsys, "data", "rm-flywheel", "--cycles", "1",
                             "--keep", "0.5", f"model.name={tiny_model_dir}",
                             f"data.train={preference_file}", "data.eval_fraction=0.25",
                             f"output_dir={tmp_path / 'runs'}", "name=fly", "tuning=frozen",
                             "train.max_steps=3", "train.save_every=0")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "fly" / "flywheel.json").read_text())
    assert [entry["cycle"] for entry in summary] == [0, 1]
    assert summary[1]["train_pairs"] == round(0.5 * summary[0]["train_pairs"])
    assert all(0 <= entry["heldout_accuracy"] <= 1 for entry in summary)
    assert "cycle 1:" in out


def test_rewards_score_reports_every_component(monkeypatch, capsys, tmp_path):
    data = write_jsonl(tmp_path / "responses.jsonl", [
        {"prompt": "Capital of France?", "response": "Absolutely! Great question! Paris."},
        {"prompt": "Capital of Spain?", "response": "Madrid."}])
    weights = tmp_path / "weights.yaml"
    weights.write_text("- {name: length_gate, weight: 1.0, params: {max_words: 3}}\n"
                       "- {name: hollow_opener, weight: -0.5, params: {mode: continuous}}\n")
    out_file = tmp_path / "scores.jsonl"
    code, out, err = run_cli(monkeypatch, capsys, "rewards", "score", str(data), "--config",
                             str(weights), "--out", str(out_file))
    assert code == 0, err
    assert "length_gate" in out and "hollow_opener" in out and "total" in out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert rows[0]["hollow_opener"] == pytest.approx(0.75)
    assert rows[0]["total"] == pytest.approx(0.0 - 0.5 * 0.75)
    assert rows[1]["total"] == pytest.approx(1.0)


def test_bad_input_gets_one_line(monkeypatch, capsys, tmp_path, tiny_model_dir):
    code, _, err = run_cli(monkeypatch, capsys, "eval", "rm", "--model", str(tiny_model_dir),
                           "--data", "builtin:arithmetic?n=4")
    _one_line_error(code, err, "not a reward model")
    code, _, err = run_cli(monkeypatch, capsys, "rm", "data.train=x.jsonl", "tunning=frozen")
    _one_line_error(code, err, "did you mean 'tuning'")
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "answer": "no response"}])
    weights = tmp_path / "w.yaml"
    weights.write_text("- {name: length_gate}\n")
    code, _, err = run_cli(monkeypatch, capsys, "rewards", "score", str(data), "-c", str(weights))
    _one_line_error(code, err, "bad.jsonl:1: field 'response'")


@pytest.mark.skipif(not HH_PAIRS.is_file(), reason="../shared/data/hh-rlhf-harmless is absent")
def test_hh_rlhf_pairs_train_a_frozen_reward_model(monkeypatch, capsys, tmp_path,
                                                   tiny_model_dir):
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(HH_PAIRS.read_text().splitlines(keepends=True)[:40]))
    converted = tmp_path / "hh.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "data", "convert-hh", str(raw), str(converted))
    assert code == 0, err
    run_dir = _train_frozen(monkeypatch, capsys, tmp_path, tiny_model_dir, converted, "hh",
                            "data.eval_fraction=0.25", "data.max_length=128",
                            "data.max_prompt_length=96")
    metrics = json.loads((run_dir / "eval.json").read_text())
    assert metrics["pairs"] > 0 and 0 <= metrics["ece"] <= 1


@pytest.mark.parametrize("name", ["rm-arithmetic", "rm-hh-frozen", "rm-hh-lora"])
def test_shipped_configs_are_valid(name):
    from prefalign.config import RewardConfig, load_config

    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    cfg = load_config(RewardConfig, path)
    assert cfg.name == name
    if "hh" in name:
        assert cfg.data.max_examples == 1200
