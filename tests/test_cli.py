"""The command line: help text, and one clear line for each kind of bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prefalign.cli import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prefalign", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def _sft_args(tmp_path, model, data, *extra):
    return ["sft", f"model.name={model}", f"data.train={data}",
            f"output_dir={tmp_path / 'runs'}", "train.max_steps=1", *extra]


def _assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_malformed_jsonl_line(monkeypatch, capsys, tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n')
    code, _, err = run_cli(monkeypatch, capsys, *_sft_args(tmp_path, tiny_model_dir, bad))
    _assert_one_line_error(code, err, "bad.jsonl", "2")


def test_missing_completion(monkeypatch, capsys, tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    code, _, err = run_cli(monkeypatch, capsys, *_sft_args(tmp_path, tiny_model_dir, bad))
    _assert_one_line_error(code, err, "bad.jsonl:2", "completion")


def test_empty_string(monkeypatch, capsys, tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "  ", "completion": "b"}\n')
    code, _, err = run_cli(monkeypatch, capsys, *_sft_args(tmp_path, tiny_model_dir, bad))
    _assert_one_line_error(code, err, "bad.jsonl:2", "prompt")


def test_misspelled_config_key(monkeypatch, capsys, tmp_path, tiny_model_dir, sft_file):
    code, _, err = run_cli(monkeypatch, capsys,
                           *_sft_args(tmp_path, tiny_model_dir, sft_file, "train.bach_size=2"))
    _assert_one_line_error(code, err, "train.bach_size", "batch_size")


def test_nonexistent_data_file(monkeypatch, capsys, tmp_path, tiny_model_dir):
    code, _, err = run_cli(monkeypatch, capsys,
                           *_sft_args(tmp_path, tiny_model_dir, tmp_path / "missing.jsonl"))
    _assert_one_line_error(code, err, "missing.jsonl")


def test_nonexistent_model_path(monkeypatch, capsys, tmp_path, sft_file):
    code, _, err = run_cli(monkeypatch, capsys,
                           *_sft_args(tmp_path, tmp_path / "no-such-model", sft_file))
    _assert_one_line_error(code, err, "no-such-model")


def test_help_lists_every_config_key_with_default():
    out = subprocess.run([sys.executable, "-m", "prefalign", "sft", "--help"],
                         capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert out.returncode == 0
    for key in ["train.lr [0.0002]", "train.batch_size [8]", "model.name ['embedded']",
                "data.max_length [512]", "--resume"]:
        assert key in out.stdout, key
