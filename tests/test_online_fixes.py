"""Fixes in the online stages, each checked against what the code used to do: one
temperature for every log-prob (online DPO with a full fine-tune, eval KL), GRPO's KL
term reduced like its policy loss, config descriptions that match the code, and
online DPO honouring ``loss.average_log_prob``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from prefalign.cli.online import load_online_config
from prefalign.config import OnlineConfig
from prefalign.engine.metrics import read_metrics
from prefalign.stages.online import online_algorithms, run_online
from prefalign.stages.online.algorithms import grpo, ppo
from prefalign.stages.online.algorithms.online_dpo import PairInputs, pair_loss
from prefalign.stages.online.rollouts import LossInputs, Rollout


def test_eval_kl_of_a_full_finetune_is_zero_before_training(tiny_model_dir, tmp_path):
    """Policy and reference are the same model at step 0, so the held-out KL (policy
    samples at τ = 0.7, both scored at τ) is 0; it was not when the policy was scored
    at temperature 1 and the reference at τ."""
    cfg = load_online_config("online-dpo", None, [
        f"model.name={tiny_model_dir}", "model.lora=null", "rollout.temperature=0.7",
        "data.train=builtin:arithmetic?n=12&seed=0", "data.eval_fraction=0.25",
        "rewards=[{name: arithmetic}]", "rollout.max_new_tokens=4",
        "rollout.prompts_per_rollout=2", "rollout.num_samples=2", "train.batch_size=2",
        "online_dpo.iterations=1", "online_dpo.steps_per_iteration=1", "eval.prompts=3",
        "eval.kl_samples=2", f"output_dir={tmp_path}", "name=odpo-full"])
    run_online(cfg)
    first = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "eval/kl" in r][0]
    assert first["step"] == 0 and abs(first["eval/kl"]) < 1e-6


def grpo_cfg(reduction: str, budget: int = 8):
    return SimpleNamespace(policy=SimpleNamespace(clip_eps=0.2, clip_eps_high=None,
                                                  reduction=reduction),
                           kl=SimpleNamespace(estimator="k3"),
                           rollout=SimpleNamespace(max_new_tokens=budget))


@pytest.mark.parametrize("reduction", ["sequence", "constant"])
def test_grpo_kl_term_uses_the_policy_reduction(reduction):
    """At ratio 1 with zero advantages the loss is β·KL alone; its token weights must be
    the policy loss's (it used to be a token mean whatever policy.reduction said)."""
    logp = torch.tensor([[-1.0, -2.0, -0.5, -1.5], [-0.3, 0, 0, 0]], dtype=torch.float64)
    ref = torch.tensor([[-1.2, -1.0, -0.5, -2.0], [-0.9, 0, 0, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    inputs = LossInputs(logp, logp.clone(), mask, torch.zeros(2, dtype=torch.float64), 0.5,
                        ref)
    loss, _ = grpo.loss(inputs, grpo_cfg(reduction))
    k3 = [[math.exp(r - p) - (r - p) - 1 for p, r in zip(lp[:n], rf[:n])]
          for lp, rf, n in zip(logp.tolist(), ref.tolist(), (4, 1))]
    kl = (sum(sum(row) / len(row) for row in k3) / 2 if reduction == "sequence"
          else sum(map(sum, k3)) / (2 * 8))
    assert loss.item() == pytest.approx(0.5 * kl, rel=1e-12)


def test_kl_descriptions_name_where_each_algorithm_puts_the_kl():
    fields = OnlineConfig.model_fields["kl"].annotation.model_fields
    coef = fields["coef"].description
    in_loss, in_reward = coef.split("or in the reward")
    for name, spec in online_algorithms().items():
        if spec.kl == "loss":
            assert f"{name}:" in in_loss and name not in in_reward
        elif spec.kl == "reward":
            assert name in in_reward and f"{name}:" not in in_loss
    estimator = fields["estimator"].description
    assert "rloo" not in estimator.lower() and "k1" in estimator


def test_rloo_ignores_the_kl_estimator_and_ppo_whitens_over_the_rollout():
    """What the descriptions now say: RLOO's KL is k1 in the reward (kl.estimator does not
    enter), and PPO whitens advantages over all of a rollout's tokens."""
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    old = -torch.rand(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rollout = Rollout(0, 1, [], [], {"completion_mask": mask},
                      torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=torch.float64), group=2,
                      kl_coef=0.1, old_logps=old, ref_logps=old - 0.2,
                      values=torch.zeros(4, 4, dtype=torch.float64))
    settings = SimpleNamespace(gamma=1.0, lam=0.95, whiten_advantages=True)
    ppo.advantages(rollout, SimpleNamespace(ppo=settings))
    tokens = rollout.advantages[mask.bool()]
    assert tokens.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert tokens.var(correction=0).item() == pytest.approx(1.0, rel=1e-6)
    assert "rollout" in ppo.PPOSettings.model_fields["whiten_advantages"].description


def test_online_dpo_honours_average_log_prob():
    """DPO on per-token mean log-probs: −log σ(β·((c̄ − c̄_ref) − (r̄ − r̄_ref)))."""
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0, -2.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    for average in (False, True):
        settings = SimpleNamespace(loss=SimpleNamespace(name="dpo", average_log_prob=average,
                                                        params=lambda: {"beta": 0.5}),
                                   xpo_alpha=0.0)
        loss, _ = pair_loss(PairInputs(logps, ref, mask, 2),
                            SimpleNamespace(online_dpo=settings))
        chosen = (-6.0 - -4.5) / (3 if average else 1)
        rejected = -0.5 - -1.0
        want = -math.log(1 / (1 + math.exp(-0.5 * (chosen - rejected))))
        assert loss.item() == pytest.approx(want, rel=1e-12)


def test_held_out_kl_refuses_sides_at_another_temperature():
    from prefalign.eval.policy import EvalSettings, PolicyEvaluator, PolicySide

    evaluator = PolicyEvaluator([{"prompt": "p"}], [[5, 6]], None, None,
                                EvalSettings(kl_temperature=0.7), 0, str)
    policy = PolicySide(lambda *a: [], lambda t: torch.zeros(1, 1), temperature=1.0)
    reference = PolicySide(lambda *a: [], lambda t: torch.zeros(1, 1), temperature=0.7)
    with pytest.raises(ValueError, match="sampling temperature 0.7"):
        evaluator._kl(policy, reference)
