"""Step-0 invariants of the online algorithms on a tiny model whose config has dropout,
trained under bf16 autocast: before any update the policy is the old policy and the
reference, so PPO, RLOO and GRPO see a probability ratio of exactly 1 on the first
minibatch, and online DPO (a full fine-tune, sampling at temperature 0.7) sees implicit
rewards of exactly 0. The numbers are read from the tensors the algorithm's loss
receives and recomputed here in float64."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from prefalign.models.tiny import save_tiny_model
from prefalign.rewards import register_reward
from prefalign.stages.online import get_online_algorithm, load_online_config, registry, run_online


class DistinctCharacters:
    """A reward with spread on random text: distinct characters / 10."""

    name = "step0_distinct"
    required_fields: tuple[str, ...] = ()

    def __call__(self, prompts, completions, rows):
        return torch.tensor([len(set(c)) / 10 for c in completions], dtype=torch.float32)


@register_reward("test_step0_distinct")
def distinct_characters() -> DistinctCharacters:
    return DistinctCharacters()


@pytest.fixture(scope="module")
def dropout_model_dir(tmp_path_factory):
    """The tiny model with attention dropout 0.3 in its config."""
    path = save_tiny_model(tmp_path_factory.mktemp("tiny-dropout") / "model")
    config = json.loads((path / "config.json").read_text())
    config["attention_dropout"] = 0.3
    (path / "config.json").write_text(json.dumps(config))
    return path


def spy_on_loss(monkeypatch, name: str) -> list:
    """Replace ``name``'s registered loss by one that records its inputs, then calls it."""
    spec = get_online_algorithm(name)
    seen = []

    def recording(inputs, cfg):
        seen.append(dataclasses.replace(inputs))
        return spec.loss(inputs, cfg)

    monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(spec, loss=recording))
    return seen


def config(algorithm, model_dir, tmp_path, *more):
    """Prompts of many lengths, so that micro-batches differ in padding."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": "Say " + "the quick fox " * n}) + "\n"
                               for n in range(16)))
    return load_online_config(algorithm, None, [
        f"model.name={model_dir}", f"data.train={prompts}",
        "data.eval_fraction=0", "rewards=[{name: test_step0_distinct}]", "rollout.max_new_tokens=8",
        "rollout.prompts_per_rollout=6", "rollout.num_samples=2", "train.batch_size=4",
        "train.grad_accum=1", "train.mixed_precision=bf16", "kl.coef=0.1",
        f"output_dir={tmp_path}", f"name={algorithm}", "hacking.warmup_rollouts=1", *more])


def largest_ratio_error(inputs) -> float:
    """``max |π_θ/π_old − 1|`` over the completion tokens, in float64."""
    log_ratio = inputs.logps.detach().double() - inputs.old_logps.double()
    mask = inputs.mask.bool()
    return float((log_ratio.exp() - 1).abs()[mask].max())


LORA = ("model.lora.r=4", "model.lora.dropout=0.2")
FULL = ("model.lora=null",)


@pytest.mark.parametrize("algorithm,model", [("ppo", LORA), ("rloo", LORA), ("grpo", LORA),
                                             ("grpo", FULL)])
def test_first_minibatch_ratio_is_one_with_dropout_in_the_model_and_bf16(
        algorithm, model, dropout_model_dir, tmp_path, monkeypatch):
    seen = spy_on_loss(monkeypatch, algorithm)
    cfg = config(algorithm, dropout_model_dir, tmp_path, "train.max_steps=1", *model)
    # π_old comes from its own no-grad pass; a micro-batch holds two prompts' groups.
    assert cfg.updates_per_rollout == 3 and cfg.train.batch_size == 2 * cfg.rollout.num_samples
    run_online(cfg)
    first = seen[0]
    assert first.mask.sum() > 0 and first.old_logps is not first.logps
    assert largest_ratio_error(first) < 1e-6
    if first.ref_logps is not None:
        gap = (first.logps.detach().double() - first.ref_logps.double())[first.mask.bool()]
        assert float(gap.abs().max()) < 1e-6


def test_kept_dropout_breaks_the_ratio(dropout_model_dir, tmp_path, monkeypatch):
    """``model.dropout=true`` keeps the dropout the invariant above relies on removing."""
    seen = spy_on_loss(monkeypatch, "ppo")
    cfg = config("ppo", dropout_model_dir, tmp_path, "train.max_steps=1", *LORA,
                 "model.dropout=true")
    run_online(cfg)
    assert largest_ratio_error(seen[0]) > 1e-3


def test_online_dpo_full_finetune_implicit_reward_is_zero_at_step_0(
        dropout_model_dir, tmp_path, monkeypatch):
    seen = spy_on_loss(monkeypatch, "online-dpo")
    cfg = config("online-dpo", dropout_model_dir, tmp_path, "model.lora=null",
                 "rollout.temperature=0.7", "rollout.num_samples=4",
                 "online_dpo.iterations=1", "online_dpo.steps_per_iteration=1")
    run_online(cfg)
    first = seen[0]
    assert first.fields == 2 and first.logps.shape[0] >= 2
    mask = first.mask.double()
    policy = (first.logps.detach().double() * mask).sum(-1)
    reference = (first.ref_logps.double() * mask).sum(-1)
    beta = 0.1  # the DPO default
    implicit = beta * (policy - reference)
    assert float(implicit.abs().max()) < 1e-6
    assert torch.isfinite(policy).all()
