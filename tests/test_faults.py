"""Faults during a run: a reward that raises or returns NaN stops it with one line naming
the reward and keeps the last good checkpoint; a full disk during a checkpoint write
leaves the previous checkpoint intact, and the run resumes from it exactly."""

from __future__ import annotations

import errno
import math

import pytest
import torch

from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.metrics import read_metrics
from prefalign.errors import RewardError
from prefalign.rewards import register_reward
from prefalign.stages.online import load_online_config, run_online

CALLS = {"n": 0}


class Flaky:
    """Distinct characters / 10, until call ``fail_at``: then raise, or return NaN."""

    required_fields: tuple[str, ...] = ()

    def __init__(self, how: str, fail_at: int):
        self.how, self.fail_at, self.name = how, fail_at, "flaky"

    def __call__(self, prompts, completions, rows):
        CALLS["n"] += 1
        if CALLS["n"] >= self.fail_at:
            if self.how == "raise":
                raise ZeroDivisionError("division by zero\n  in the user's reward")
            return torch.full((len(completions),), float("nan"))
        return torch.tensor([len(set(c)) / 10 for c in completions])


@register_reward("test_flaky")
def flaky(how: str = "raise", fail_at: int = 3) -> Flaky:
    return Flaky(how, fail_at)


def _config(tiny_model_dir, tmp_path, name, *more):
    return load_online_config("grpo", None, [
        f"model.name={tiny_model_dir}", "data.train=builtin:arithmetic?n=24&seed=0",
        "data.eval_fraction=0", "rollout.max_new_tokens=4", "rollout.prompts_per_rollout=2",
        "rollout.num_samples=2", "train.batch_size=2", "train.grad_accum=2",
        "train.max_steps=5", "train.save_every=1", "model.lora.r=4", f"output_dir={tmp_path}",
        f"name={name}", "hacking.warmup_rollouts=1", *more])


@pytest.mark.parametrize("how, message", [
    ("raise", r"reward 'test_flaky' raised ZeroDivisionError: division by zero in the user"),
    ("nan", r"reward 'test_flaky' scored 4 of 4 completions NaN or infinite")])
def test_a_failing_reward_stops_the_run_and_keeps_the_last_checkpoint(
        tiny_model_dir, tmp_path, how, message):
    CALLS["n"] = 0
    cfg = _config(tiny_model_dir, tmp_path, how,
                  f"rewards=[{{name: test_flaky, params: {{how: {how}, fail_at: 3}}}}]")
    with pytest.raises(RewardError, match=message) as caught:
        run_online(cfg)
    assert "\n" not in str(caught.value)
    # rollouts 1 and 2 scored; the third failed before its step
    assert [step for step, _ in list_checkpoints(cfg.run_dir / "checkpoints")] == [1, 2]
    assert not (cfg.run_dir / "final").exists()


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(
        tiny_model_dir, tmp_path, monkeypatch):
    reward = "rewards=[{name: test_flaky, params: {fail_at: 1000000}}]"
    straight = _config(tiny_model_dir, tmp_path, "straight", reward)
    CALLS["n"] = 0
    run_online(straight)
    import prefalign.engine.checkpoint as checkpoint

    real = checkpoint.save_file
    writes = {"n": 0}

    def disk_fills_up(tensors, path, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *args, **kwargs)

    cfg = _config(tiny_model_dir, tmp_path, "full-disk", reward)
    monkeypatch.setattr(checkpoint, "save_file", disk_fills_up)
    CALLS["n"] = 0
    with pytest.raises(OSError, match="No space left"):
        run_online(cfg)
    assert [step for step, _ in list_checkpoints(cfg.run_dir / "checkpoints")] == [1, 2]
    monkeypatch.setattr(checkpoint, "save_file", real)
    CALLS["n"] = 0  # the reward is stateless for these steps
    run_online(cfg, resume=True)
    timing = {"tokens_per_s", "step_time_s"}
    rows = [{k: v for k, v in r.items() if k not in timing}
            for r in read_metrics(cfg.run_dir / "metrics.jsonl")]
    expected = [{k: v for k, v in r.items() if k not in timing}
                for r in read_metrics(straight.run_dir / "metrics.jsonl")]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        for key, value in want.items():
            if isinstance(value, float) and math.isfinite(value):
                assert got[key] == pytest.approx(value, abs=1e-6), key
