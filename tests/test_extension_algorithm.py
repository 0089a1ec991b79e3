"""A new online algorithm from this file alone: plain REINFORCE with a mean baseline
(Williams 1992), registered and run end to end through ``run_online``, its command
and config built from the registry. No file of the package is edited."""

from __future__ import annotations

import math

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from prefalign.cli import online as online_cli
from prefalign.config import StrictModel
from prefalign.engine.metrics import read_metrics
from prefalign.errors import ConfigError
from prefalign.losses.policy import masked_mean
from prefalign.stages.online import (
    OnlineAlgorithm,
    load_online_config,
    register_online_algorithm,
    registry,
    run_online,
)


class MeanBaselineSettings(StrictModel):
    scale: float = Field(1.0, gt=0, description="Multiplies every advantage.")


def mean_baseline(rollout, cfg) -> dict[str, float]:
    """A_n = scale · (R_n − mean_batch R), one per sequence."""
    rollout.advantages = cfg.toy_reinforce.scale * (rollout.rewards - rollout.rewards.mean())
    return {"toy/baseline": float(rollout.rewards.mean())}


def reinforce_loss(x, cfg):
    """−mean_tokens A · log π(y_t): the REINFORCE surrogate."""
    loss = -masked_mean(x.advantages[:, None] * x.logps, x.mask)
    return loss, {"toy/loss": float(loss.detach())}


@pytest.fixture
def toy_algorithm(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.online_algorithms()))
    return register_online_algorithm(OnlineAlgorithm(
        name="toy-reinforce", summary="REINFORCE with a mean baseline.",
        advantages=mean_baseline, loss=reinforce_loss, settings=MeanBaselineSettings,
        kl="none"))


def test_toy_algorithm_runs_end_to_end(toy_algorithm, tiny_model_dir, tmp_path):
    cfg = load_online_config("toy-reinforce", None, [
        f"model.name={tiny_model_dir}", "data.train=builtin:arithmetic?n=12&seed=0",
        "data.eval_fraction=0.25", "rewards=[{name: arithmetic}]", "rollout.max_new_tokens=4",
        "rollout.prompts_per_rollout=2", "rollout.num_samples=2", "train.batch_size=4",
        "train.max_steps=2", "toy_reinforce.scale=2.0", "eval.prompts=2", "model.lora.r=4",
        f"output_dir={tmp_path}", "name=toy"])
    assert cfg.toy_reinforce.scale == 2.0
    result = run_online(cfg)
    assert result.step == 2 and math.isfinite(result.last_metrics["toy/loss"])
    rows = read_metrics(cfg.run_dir / "rollouts.jsonl")
    assert [r["rollout"] for r in rows] == [0, 1] and "toy/baseline" in rows[0]
    assert "kl/coef" not in rows[0]  # kl="none": no reference log-probs recorded
    assert (cfg.run_dir / "final").is_dir() and (cfg.run_dir / "policy_eval.json").exists()


def test_toy_algorithm_gets_a_command_and_a_typed_section(toy_algorithm):
    with pytest.raises(ConfigError, match="toy_reinforce.scal'; did you mean 'scale'"):
        load_online_config("toy-reinforce", None, ["data.train=x.jsonl",
                                                   "rewards=[{name: arithmetic}]",
                                                   "toy_reinforce.scal=2"])
    app = typer.Typer()
    online_cli.register(app)
    out = CliRunner().invoke(app, ["toy-reinforce", "--help"])
    assert out.exit_code == 0 and "mean baseline" in out.output
    assert "toy_reinforce.scale" in out.output


def test_unknown_algorithm_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown online algorithm 'grpoo'.*grpo.*rloo"):
        load_online_config("grpoo", None, [])
