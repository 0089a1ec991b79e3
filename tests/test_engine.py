"""The training loop: accumulation, exact resume, Ctrl-C, NaN guard."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from prefalign.config import SFTConfig, TrainConfig
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.loop import Engine, TrainingDiverged, TrainingInterrupted
from prefalign.engine.metrics import read_metrics
from prefalign.engine.rundir import RunDir
from prefalign.stages.sft import run_sft


class RegressionAlgorithm:
    """Least squares on fixed data; batches are slices of a seeded permutation."""

    def __init__(self, n: int, batch_size: int, nan_at: int | None = None):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1
        self.batch_size, self.nan_at, self.calls = batch_size, nan_at, 0

    def num_batches(self, epoch: int) -> int:
        return len(self.x) // self.batch_size

    def batch(self, epoch: int, index: int):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(epoch))
        idx = order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x[idx], self.y[idx]

    def step(self, model, batch) -> StepOutput:
        self.calls += 1
        x, y = batch
        loss = ((model(x).squeeze(-1) - y) ** 2).mean()
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return StepOutput(loss=loss, tokens=len(x))

    def evaluate(self, model):
        return {}


def _linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    cfg = dict(lr=0.05, max_steps=3, scheduler="constant", warmup_ratio=0.0, save_every=0,
               max_grad_norm=None)
    big = _linear()
    Engine(big, RegressionAlgorithm(16, 4), TrainConfig(**cfg, grad_accum=1),
           RunDir(tmp_path / "a").create()).train()
    small = _linear()
    Engine(small, RegressionAlgorithm(16, 2), TrainConfig(**cfg, grad_accum=2),
           RunDir(tmp_path / "b").create()).train()
    # Same samples per step: micro-batches of 2 from the same permutation as batches of 4.
    for p_big, p_small in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(p_big, p_small, rtol=1e-6, atol=1e-7)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = RunDir(tmp_path / "nan").create()
    engine = Engine(_linear(), RegressionAlgorithm(32, 4, nan_at=5),
                    TrainConfig(lr=0.01, max_steps=8, save_every=2), run)
    with pytest.raises(TrainingDiverged, match="step 5"):
        engine.train()
    assert [s for s, _ in list_checkpoints(run.checkpoints)] == [2, 4]


def _sft_config(tmp_path, model_dir, data_file, name: str, lora=True) -> SFTConfig:
    return SFTConfig(
        name=name, output_dir=str(tmp_path / "runs"),
        model={"name": str(model_dir), "lora": {"r": 4, "alpha": 8} if lora else None},
        data={"train": str(data_file), "eval_fraction": 0.2, "max_length": 48,
              "max_prompt_length": 32},
        train={"lr": 5e-3, "max_steps": 6, "batch_size": 4, "save_every": 2, "seed": 3,
               "eval_every": 0, "threads": 1},
    )


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_resume_after_ctrl_c_reaches_the_same_loss(tmp_path, tiny_model_dir, sft_file, lora):
    straight = run_sft(_sft_config(tmp_path, tiny_model_dir, sft_file, "straight", lora))

    def interrupt_at_three(step, metrics):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = _sft_config(tmp_path, tiny_model_dir, sft_file, "stopped", lora)
    with pytest.raises(TrainingInterrupted, match="step 3"):
        run_sft(cfg, on_step_end=interrupt_at_three)
    assert [s for s, _ in list_checkpoints(cfg.run_dir / "checkpoints")] == [2, 3]
    steps_run = []
    resumed = run_sft(cfg, resume=True, on_step_end=lambda step, _: steps_run.append(step))
    assert steps_run == [4, 5, 6]

    assert resumed.step == straight.step == 6
    assert abs(resumed.last_metrics["loss"] - straight.last_metrics["loss"]) < 1e-6
    assert abs(resumed.eval_metrics["loss"] - straight.eval_metrics["loss"]) < 1e-6
    losses = lambda name: [r["loss"] for r in read_metrics(tmp_path / "runs" / name /
                                                           "metrics.jsonl") if "loss" in r]
    assert len(losses("stopped")) == 6
    assert losses("stopped") == pytest.approx(losses("straight"), abs=1e-6)
    saved = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert saved["seed"] == 3 and "train" in saved["dataset_fingerprints"]


def test_a_run_killed_after_its_final_evaluation_resumes_without_a_second_one(
        tmp_path, tiny_model_dir, sft_file):
    cfg = _sft_config(tmp_path, tiny_model_dir, sft_file, "finished", lora=True)
    run_sft(cfg)
    rows = read_metrics(cfg.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/loss" in r] == [6]
    run_sft(cfg, resume=True)  # as after a SIGKILL between the final evaluation and exit
    again = read_metrics(cfg.run_dir / "metrics.jsonl")
    assert [r["step"] for r in again if "eval/loss" in r] == [6]
    def strip(table):
        return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "step_time_s")}
                for r in table]

    assert strip(again) == strip(rows)


@pytest.mark.slow
def test_soak_kills_and_resumes_to_the_same_weights(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "scripts/soak.py", "--stages", "sft", "grpo",
                          "--kills", "3", "--out", str(tmp_path)], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("→ equal") == 2
