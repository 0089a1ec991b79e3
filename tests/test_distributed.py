"""Several processes, one result: two gloo processes on CPU match one process exactly."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefalign.cli import main
from prefalign.config import PreferenceConfig, SFTConfig
from prefalign.engine import distributed
from prefalign.engine.launcher import SHIPPED_CONFIGS, launch_command, resolve_accelerate_config
from prefalign.engine.metrics import MetricsLogger, read_metrics
from prefalign.errors import ConfigError
from prefalign.stages.preference import run_preference
from prefalign.stages.sft import run_sft


def test_each_rank_gets_whole_micro_batches_of_the_step():
    grad_accum, processes = 6, 3
    for step in range(4):
        shares = [distributed.my_micro_batches(step, grad_accum, rank, processes)
                  for rank in range(processes)]
        assert [index for share in shares for index in share] == \
            list(range(step * grad_accum, (step + 1) * grad_accum))
    with pytest.raises(ConfigError, match="multiple of the 2 processes"):
        distributed.micro_batches_per_rank(3, 2)


def test_round_robin_shards_reassemble_in_order():
    values = [torch.tensor([float(i)]) for i in range(7)]
    shards = [[(i, values[i]) for i in distributed.shard_indices(7, rank, 3)]
              for rank in range(3)]
    assert sorted(len(s) for s in shards) == [2, 2, 3]
    assert torch.equal(torch.cat(distributed.concat_in_order(shards)), torch.arange(7.0))


def test_only_rank_zero_writes_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    MetricsLogger(tmp_path / "metrics.jsonl").log(1, {"loss": 1.0})
    assert not (tmp_path / "metrics.jsonl").exists()
    monkeypatch.setenv("RANK", "0")
    MetricsLogger(tmp_path / "metrics.jsonl").log(1, {"loss": 1.0})
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 1.0}]


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {"cpu-ddp": ("MULTI_GPU", None), "ddp": ("MULTI_GPU", None),
                "fsdp": ("FSDP", None), "fsdp-offload": ("FSDP", None),
                "zero2": ("DEEPSPEED", 2), "zero3": ("DEEPSPEED", 3),
                "zero3-offload": ("DEEPSPEED", 3)}
    assert sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml")) == sorted(expected)
    for name, (kind, stage) in expected.items():
        config = load_config_from_file(str(resolve_accelerate_config(name)))
        assert config.distributed_type == kind
        assert (config.deepspeed_config or {}).get("zero_stage") == stage


def test_launcher_command_and_bad_config(tmp_path):
    command = launch_command(["sft", "-c", "x.yaml"], "cpu-ddp", num_processes=2, port=1234)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert command[4] == str(SHIPPED_CONFIGS / "cpu-ddp.yaml")
    assert command[5:] == ["--num_processes", "2", "--main_process_port", "1234",
                           "-m", "prefalign", "sft", "-c", "x.yaml"]
    with pytest.raises(ConfigError, match="accelerate config not found: nope.yaml; shipped"):
        launch_command(["sft"], "nope.yaml")
    with pytest.raises(ConfigError, match="accelerate config not found: ddp2"):
        launch_command(["sft"], "ddp2")


def test_launch_command_reports_a_missing_config_in_one_line(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "missing.yaml"
    monkeypatch.setattr(sys, "argv", ["prefalign", "launch", "--accelerate-config",
                                      str(missing), "sft"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        (f"error: accelerate config not found: {missing}; shipped configs: "
         "cpu-ddp, ddp, fsdp, fsdp-offload, zero2, zero3, zero3-offload")]


# -- two real processes ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _overrides(raw: dict, prefix: str = "") -> list[str]:
    items = []
    for key, value in raw.items():
        if isinstance(value, dict):
            items += _overrides(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value)}")
    return items


def _run(command: list[str], cache: Path) -> None:
    env = {**os.environ, "PREFALIGN_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _accelerate(stage_args: list[str], cache: Path) -> None:
    _run([sys.executable, "-m", "prefalign", "launch", "--accelerate-config", "cpu-ddp",
          "--num-processes", "2", "--port", str(_free_port()), *stage_args], cache)


def _torchrun(stage_args: list[str], cache: Path) -> None:
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
          "--master_port", str(_free_port()), "-m", "prefalign", *stage_args], cache)


def _rows(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def _assert_same_history(one: Path, two: Path, keys=("loss", "grad_norm")) -> None:
    single, double = _rows(one), _rows(two)
    assert [r["step"] for r in double] == [r["step"] for r in single]
    for a, b in zip(single, double):
        for key in keys:
            assert b[key] == pytest.approx(a[key], abs=1e-5), (key, a["step"])
    evals = lambda rows: {k: v for r in rows for k, v in r.items() if k.startswith("eval/")}
    for key, value in evals(read_metrics(one / "metrics.jsonl")).items():
        assert evals(read_metrics(two / "metrics.jsonl"))[key] == pytest.approx(value, abs=1e-5)


def test_sft_two_processes_match_one_and_resume(tmp_path, tiny_model_dir, sft_file, monkeypatch):
    """Same global batch (2 micro-batches of 4) and seed; 2 ranks × 1 micro-batch each."""
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    raw = {"output_dir": str(tmp_path / "runs"),
           "model": {"name": str(tiny_model_dir), "lora": {"r": 4, "alpha": 8}},
           "data": {"train": str(sft_file), "eval_fraction": 0.2, "max_length": 48,
                    "max_prompt_length": 32},
           "train": {"lr": 5e-3, "max_steps": 4, "batch_size": 4, "grad_accum": 2,
                     "save_every": 2, "seed": 3, "threads": 1}}
    run_sft(SFTConfig.model_validate({**raw, "name": "one"}))
    _accelerate(["sft", "name=two", *_overrides(raw)], tmp_path / "cache")
    one, two = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    _assert_same_history(one, two)
    state = json.loads((two / "checkpoints" / "step-4" / "trainer_state.json").read_text())
    assert state["processes"] == 2
    assert (two / "final" / "adapter_config.json").exists()

    # Resume under two processes (torchrun this time) from the step-2 checkpoint.
    shutil.rmtree(two / "checkpoints" / "step-4")
    _torchrun(["sft", "name=two", "--resume", *_overrides(raw)], tmp_path / "cache")
    _assert_same_history(one, two)


def test_dpo_two_processes_match_one_with_a_shared_reference(tmp_path, tiny_model_dir,
                                                             preference_file, monkeypatch):
    raw = {"output_dir": str(tmp_path / "runs"),
           "model": {"name": str(tiny_model_dir), "lora": {"r": 4, "alpha": 8}},
           "data": {"train": str(preference_file), "eval_fraction": 0.25, "max_length": 48,
                    "max_prompt_length": 32},
           "train": {"lr": 1e-2, "max_steps": 3, "batch_size": 4, "grad_accum": 2,
                     "save_every": 0, "seed": 0, "threads": 1}}
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache-one"))
    run_preference(PreferenceConfig.model_validate({**raw, "name": "one"}))
    _accelerate(["dpo", "name=two", *_overrides(raw)], tmp_path / "cache-two")
    one, two = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    _assert_same_history(one, two, keys=("loss", "grad_norm", "rewards/margin"))

    # The reference pass ran once for the job (its batches split between the ranks),
    # was logged once, and rank 0 cached exactly the single-process values.
    passes = lambda run: [r["reference/forward_passes"]
                          for r in read_metrics(run / "metrics.jsonl")
                          if "reference/forward_passes" in r]
    assert passes(two) == passes(one) and passes(one)[0] > 0
    cached = lambda cache: {p.name: load_file(str(p))
                            for p in (cache / "reference_logps").glob("*.safetensors")}
    single, double = cached(tmp_path / "cache-one"), cached(tmp_path / "cache-two")
    assert single.keys() == double.keys() and len(single) == 2
    for name, tensors in single.items():
        for key, value in tensors.items():
            torch.testing.assert_close(double[name][key], value, rtol=0, atol=1e-6)
