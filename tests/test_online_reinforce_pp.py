"""REINFORCE++ (Hu 2025): advantages against the paper's formulas written out in
float64, and a short run on the tiny model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from prefalign.engine.metrics import read_metrics
from prefalign.stages.online import load_online_config, run_online
from prefalign.stages.online.algorithms import reinforce_pp
from prefalign.stages.online.rollouts import Rollout


@pytest.mark.parametrize("gamma", [1.0, 0.95])
def test_advantages_are_the_kl_penalised_reward_to_go_normalised_over_the_batch(gamma):
    generator = torch.Generator().manual_seed(11)
    old = -torch.rand(3, 5, generator=generator, dtype=torch.float64) * 3
    ref = -torch.rand(3, 5, generator=generator, dtype=torch.float64) * 3
    lengths, scores, beta = [5, 3, 1], [1.0, -0.5, 2.0], 0.2
    mask = torch.tensor([[1 if t < n else 0 for t in range(5)] for n in lengths])
    rollout = Rollout(0, 1, [], [], {"completion_mask": mask},
                      torch.tensor(scores, dtype=torch.float64), group=1, kl_coef=beta,
                      old_logps=old, ref_logps=ref)
    reinforce_pp.advantages(rollout, SimpleNamespace(reinforce_pp=SimpleNamespace(gamma=gamma)))
    # r_t = −β·(log π_old − log π_ref)_t + [t = last]·R;  G_t = Σ_{i≥t} γ^{i−t}·r_i
    returns = {}
    for b, n in enumerate(lengths):
        rewards = [-beta * (old[b, t].item() - ref[b, t].item()) + (scores[b] if t == n - 1
                                                                     else 0.0)
                   for t in range(n)]
        for t in range(n):
            returns[b, t] = sum(gamma ** (i - t) * rewards[i] for i in range(t, n))
    mean = sum(returns.values()) / len(returns)
    variance = sum((g - mean) ** 2 for g in returns.values()) / len(returns)
    for (b, t), g in returns.items():
        want = (g - mean) / math.sqrt(variance + 1e-8)
        assert rollout.advantages[b, t].item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert all(rollout.advantages[b, t].item() == 0 for b in range(3) for t in range(5)
               if t >= lengths[b])


def test_short_run_on_the_tiny_model(tiny_model_dir, tmp_path):
    cfg = load_online_config("reinforce-pp", None, [
        f"model.name={tiny_model_dir}", "data.train=builtin:arithmetic?n=16&seed=0",
        "data.eval_fraction=0.25", "rewards=[{name: arithmetic}]", "rollout.max_new_tokens=4",
        "rollout.prompts_per_rollout=4", "rollout.num_samples=1", "train.batch_size=2",
        "train.grad_accum=1", "train.max_steps=4", "kl.coef=0.1", "eval.prompts=2",
        "eval.kl_samples=1", "model.lora.r=4", f"output_dir={tmp_path}", "name=rpp",
        "hacking.warmup_rollouts=1"])
    assert cfg.reinforce_pp.gamma == 1.0 and cfg.updates_per_rollout == 2
    result = run_online(cfg)
    assert result.step == 4 and all(math.isfinite(v) for v in result.last_metrics.values())
    rollouts = read_metrics(cfg.run_dir / "rollouts.jsonl")
    assert [r["rollout"] for r in rollouts] == [0, 1]
    assert all(r["kl/coef"] == pytest.approx(0.1) and "reward/shaped" in r for r in rollouts)
    assert "eval/kl" in read_metrics(cfg.run_dir / "metrics.jsonl")[-1]
