"""GRPO, RLOO, PPO and online DPO on a tiny random model: advantages against written-out
formulas, whole runs end to end, buffers, and exact resume."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from prefalign.engine.metrics import read_metrics
from prefalign.losses.kl import kl_shaped_rewards
from prefalign.rewards import register_reward
from prefalign.stages.online import load_online_config, run_online
from prefalign.stages.online.algorithms import grpo, rloo
from prefalign.stages.online.algorithms.online_dpo import OnlineDPOAlgorithm
from prefalign.stages.online.evaluate_run import evaluate_run
from prefalign.stages.online.registry import get_online_algorithm
from prefalign.stages.online.rollout_algorithm import MicroBatch, RolloutAlgorithm
from prefalign.stages.online.rollouts import Rollout


class DistinctCharacters:
    """A cheap reward with spread on random text: distinct characters / 10."""

    name = "distinct_characters"
    required_fields: tuple[str, ...] = ()

    def __call__(self, prompts, completions, rows):
        return torch.tensor([len(set(c)) / 10 for c in completions], dtype=torch.float32)


@register_reward("test_distinct_characters")
def distinct_characters() -> DistinctCharacters:
    return DistinctCharacters()


def config(algorithm: str, tiny_model_dir, tmp_path, *more: str):
    return load_online_config(algorithm, None, [
        f"model.name={tiny_model_dir}", "data.train=builtin:arithmetic?n=24&seed=0",
        "data.eval_fraction=0.25", "rewards=[{name: test_distinct_characters}]",
        "rollout.max_new_tokens=4", "rollout.prompts_per_rollout=2", "rollout.num_samples=2",
        "train.batch_size=2", "train.grad_accum=2", "eval.prompts=3", "eval.batch_size=8",
        f"output_dir={tmp_path}", f"name={algorithm}", "hacking.warmup_rollouts=1",
        "model.lora.r=4", "train.lr=1e-2", *more])


def rollout_with(rewards: list[float], group: int) -> Rollout:
    return Rollout(0, 1, [], [], {}, torch.tensor(rewards, dtype=torch.float64), group)


def test_grpo_advantages_are_normalised_within_each_prompts_group():
    rewards = [1.0, 0.0, 0.5, 0.5, 2.0, 4.0, 3.0, 5.0]
    for normalise in (True, False):
        cfg = SimpleNamespace(policy=SimpleNamespace(normalize_std=normalise))
        rollout = rollout_with(rewards, 4)
        grpo.advantages(rollout, cfg)
        for p in range(2):
            group = rewards[4 * p:4 * p + 4]
            mean = sum(group) / 4
            std = math.sqrt(sum((r - mean) ** 2 for r in group) / 4)
            for g, r in enumerate(group):
                want = (r - mean) / (std + 1e-6) if normalise else r - mean
                assert rollout.advantages[4 * p + g].item() == pytest.approx(want, rel=1e-9)


def test_rloo_puts_the_sequence_kl_into_the_reward_before_leaving_one_out():
    rewards = [1.0, 0.0, 0.5, 2.0, 2.0, 1.0]
    rollout = rollout_with(rewards, 3)
    rollout.kl_coef = 0.5
    mask = torch.tensor([[1, 1, 0]] * 6, dtype=torch.float64)
    rollout.tensors = {"completion_mask": mask}
    rollout.old_logps = torch.arange(18, dtype=torch.float64).view(6, 3) / -10
    rollout.ref_logps = torch.full((6, 3), -0.5, dtype=torch.float64)
    rloo.advantages(rollout, SimpleNamespace())
    shaped = [r - 0.5 * sum(rollout.old_logps[i, t].item() + 0.5 for t in range(2))
              for i, r in enumerate(rewards)]
    for i, value in enumerate(shaped):
        start = 3 * (i // 3)
        others = [shaped[j] for j in range(start, start + 3) if j != i]
        assert rollout.advantages[i].item() == pytest.approx(value - sum(others) / 2, rel=1e-9)


def test_ppo_reward_is_kl_penalty_per_token_plus_score_at_the_last_token():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, 0.0, 0.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.1, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.float64)
    scores = torch.tensor([2.0, -1.0], dtype=torch.float64)
    got = kl_shaped_rewards(scores, old, ref, mask, beta=0.1)
    want = [[-0.1 * 0.5, -0.1 * -1.0, -0.1 * 0.0 + 2.0], [-0.1 * -0.2 - 1.0, 0.0, 0.0]]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize("batch_size,grad_accum,epochs", [(2, 4, 1), (4, 2, 2), (2, 2, 2)])
def test_token_weights_make_micro_batch_means_the_step_token_mean(tmp_path, batch_size,
                                                                  grad_accum, epochs):
    cfg = load_online_config("grpo", None, [
        "model.name=unused", "data.train=builtin:arithmetic?n=8&seed=0",
        "rewards=[{name: arithmetic}]",
        "rollout.prompts_per_rollout=4", "rollout.num_samples=2",
        f"train.batch_size={batch_size}", f"train.grad_accum={grad_accum}",
        f"policy.epochs_per_rollout={epochs}", f"output_dir={tmp_path}"])
    setup = SimpleNamespace(cfg=cfg, records=[{}] * 8, run=SimpleNamespace(root=tmp_path))
    algorithm = RolloutAlgorithm(setup, get_online_algorithm("grpo"))
    lengths = [1, 7, 2, 5, 3, 3, 8, 4]  # completion tokens of the rollout's 8 sequences
    mask = torch.tensor([[1.0] * n + [0.0] * (8 - n) for n in lengths])
    rollout = Rollout(3, 1, [], [], {"completion_mask": mask}, torch.zeros(8), 2)
    per_token = torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    micro_per_rollout = algorithm.micro_per_rollout
    assert micro_per_rollout == epochs * 8 // batch_size
    for first in range(0, micro_per_rollout, grad_accum):  # each optimizer step
        rows_of_step, step_loss = [], 0.0
        for index in range(first, first + grad_accum):
            pass_number, minibatch = divmod(index, algorithm.micro_per_pass)
            prompts = algorithm.micro_prompts(rollout.index, pass_number)[minibatch]
            rows = [p * 2 + g for p in prompts for g in range(2)]
            micro_mean = (per_token[rows] * mask[rows]).sum() / mask[rows].sum()
            weight = algorithm.token_weight(MicroBatch(rollout, prompts, rows, index))
            step_loss += weight * micro_mean / grad_accum  # the Engine's average
            rows_of_step += rows
        want = (per_token[rows_of_step] * mask[rows_of_step]).sum() / mask[rows_of_step].sum()
        assert step_loss == pytest.approx(want.item(), rel=1e-12)


def test_grpo_run_writes_its_outputs_and_resumes_exactly(tiny_model_dir, tmp_path):
    cfg = config("grpo", tiny_model_dir, tmp_path, "train.max_steps=3", "train.save_every=2",
                 "train.eval_every=2", "kl.coef=0.1")
    result = run_online(cfg)
    run = cfg.run_dir
    assert result.step == 3 and math.isfinite(result.last_metrics["loss"])
    for name in ("rollouts.jsonl", "alerts.json", "policy_eval.json", "examples.md", "eval.json",
                 "figures/reward_hist.png", "figures/reward.png", "final"):
        assert (run / name).exists(), name
    rollouts = read_metrics(run / "rollouts.jsonl")
    assert [r["rollout"] for r in rollouts] == [0, 1, 2]
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "eval/win_rate" in r]
    assert [r["step"] for r in evals] == [0, 2, 3]
    assert "| prompt | reference |" in (run / "examples.md").read_text()
    first = read_metrics(run / "metrics.jsonl")
    shutil.rmtree(run / "final")
    run_online(cfg, resume=True)
    again = read_metrics(run / "metrics.jsonl")
    timing = {"tokens_per_s", "step_time_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in again] == \
        [{k: v for k, v in r.items() if k not in timing} for r in first]
    assert read_metrics(run / "rollouts.jsonl") == rollouts
    evaluation, paths = evaluate_run(run, ["eval.prompts=2"])
    assert set(evaluation.metrics) >= {"reward", "win_rate", "kl", "length", "reference_length"}
    assert 0 <= evaluation.metrics["win_rate"] <= 1 and len(evaluation.prompts) == 2
    assert all(path.exists() for path in paths.values())


def test_grpo_resumed_from_its_final_checkpoint_evaluates_as_the_whole_run(tiny_model_dir,
                                                                          tmp_path):
    cfg = config("grpo", tiny_model_dir, tmp_path, "train.max_steps=3", "train.grad_accum=1",
                 "train.eval_every=0", "train.save_every=1", "kl.coef=0.1")
    run_online(cfg)
    first = read_metrics(cfg.run_dir / "metrics.jsonl")
    # held-out KL 0 at step 0, then above 0: one rise, which the resumed run must also see
    assert first[-1]["step"] == 3 and first[-1]["eval/hacking/kl_rises"] == 1
    shutil.rmtree(cfg.run_dir / "final")
    run_online(cfg, resume=True)  # from the step-3 checkpoint: only the final evaluation
    again = read_metrics(cfg.run_dir / "metrics.jsonl")
    timing = {"tokens_per_s", "step_time_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in again] == \
        [{k: v for k, v in r.items() if k not in timing} for r in first]


def test_ppo_and_rloo_runs_stay_finite(tiny_model_dir, tmp_path):
    cfg = config("ppo", tiny_model_dir, tmp_path, "train.max_steps=4", "train.grad_accum=1",
                 "policy.epochs_per_rollout=2", "kl.adaptive=true", "kl.target=0.05",
                 "kl.horizon=40", "kl.coef=0.2", "eval.kl_samples=0")
    result = run_online(cfg)
    assert all(math.isfinite(v) for v in result.last_metrics.values())
    for row in read_metrics(cfg.run_dir / "rollouts.jsonl"):
        error = row["kl/ref"] / 0.05 - 1
        expected = row["kl/coef"] * (1 + max(-0.2, min(0.2, error)) * 4 / 40)
        assert row["kl/next_coef"] == pytest.approx(expected, rel=1e-6)
    rloo = config("rloo", tiny_model_dir, tmp_path, "train.max_steps=2", "kl.coef=0.1",
                  "eval.kl_samples=0")
    assert math.isfinite(run_online(rloo).last_metrics["loss"])


@pytest.mark.parametrize("strategy,expected", [
    ("current", [[0], [1], [2]]), ("rolling2", [[0], [0, 1], [1, 2]]),
    ("full", [[0], [0, 1], [0, 1, 2]])])
def test_online_dpo_buffer_strategies(strategy, expected):
    algorithm = object.__new__(OnlineDPOAlgorithm)
    algorithm.settings = SimpleNamespace(buffer=strategy)
    algorithm.iterations, algorithm._reuse_below = {}, 0
    algorithm._label = lambda i: [{"iteration": i}, {"iteration": i}]
    for iteration, want in enumerate(expected):
        buffer = algorithm.buffer(iteration)
        assert sorted({pair["iteration"] for pair in buffer}) == want
        assert len(buffer) == 2 * len(want)


def test_online_dpo_run_with_xpo_evaluates_every_iteration(tiny_model_dir, tmp_path):
    cfg = config("online-dpo", tiny_model_dir, tmp_path, "online_dpo.iterations=2",
                 "online_dpo.steps_per_iteration=1", "online_dpo.buffer=rolling2",
                 "online_dpo.xpo_alpha=0.01", "rollout.prompts_per_rollout=3",
                 "train.grad_accum=1", "eval.kl_samples=0")
    result = run_online(cfg)
    assert result.step == 2 and math.isfinite(result.last_metrics["loss"])
    evals = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "eval/win_rate" in r]
    assert [r["eval/iteration"] for r in evals] == [0, 1, 2]
    stored = json.loads((cfg.run_dir / "buffer" / "iteration-1.json").read_text())
    assert stored["stats"]["sequences"] == 6
    for pair in stored["pairs"]:
        assert pair["chosen_reward"] > pair["rejected_reward"] and "xpo_ids" in pair
    steps = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "rewards/margin" in r]
    assert len(steps) == 2 and all(math.isfinite(r["xpo/ref_sample_logp"]) for r in steps)
