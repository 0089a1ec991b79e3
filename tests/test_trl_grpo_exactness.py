"""prefalign's GRPO step against TRL's ``GRPOTrainer`` (the benchmark's peer): the same
weights, prompts, completions and rewards give the same loss and the same LoRA gradients.

GRPO: Shao et al. 2024, arXiv 2402.03300; the token-level loss both sides use here
(every completion token of the batch weighs the same): DAPO, Yu et al. 2025, arXiv
2503.14476. TRL's generation is replaced by a fixed set of completions, so nothing
depends on both sides sampling alike. Aligned settings: LoRA r=4, alpha 8, dropout 0
on q/k/v/o with the same non-zero weights; group size 4; temperature 0.7 for every
log-prob (TRL's ``temperature``, prefalign's ``rollout.temperature``); ε = 0.2; β ∈
{0, 0.04} with the k3 estimator, the reference being the policy with its adapters
disabled; TRL ``loss_type="dapo"`` with one micro-batch per generation (its
normaliser is then the batch's completion-token count) = prefalign
``policy.reduction=token``. Both take π_old = π_θ detached for one update per
rollout; the ``stale`` cases instead give both the same perturbed π_old (as on a
later pass over a rollout), so that the clipping is active.

What cannot be made equal, hence set on TRL's side:

* ``scale_rewards="none"`` (prefalign ``policy.normalize_std=false``): TRL divides by
  the group's Bessel-corrected std plus 1e-4, prefalign by the population std
  (DeepSeekMath's ``std`` of the group) plus 1e-6; the two differ by a factor
  ≈ √((G−1)/G), which the last test pins down;
* ``use_bias_correction_kl=False``: TRL's default multiplies the KL term by the
  (differentiable) ratio π_θ/π_old, which adds ``k3·∇log π`` to the gradient even
  on-policy; prefalign's KL term is GRPO's plain k3.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from peft import get_peft_model
from tests.test_trl_exactness import _lora_config, _lora_grads
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from prefalign.rollout.batch import encode_prompts, pack_groups
from prefalign.stages.online import load_online_config
from prefalign.stages.online.algorithms.grpo import GRPO
from prefalign.stages.online.model import PolicyModel
from prefalign.stages.online.reference import ReferencePolicy
from prefalign.stages.online.rollout_algorithm import MicroBatch, RolloutAlgorithm
from prefalign.stages.online.rollouts import Rollout
from prefalign.stages.online.sequences import group_rows

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PROMPTS = ["What is 12 + 7?", "How do I bake bread? Please answer the question."]
GROUP, TEMPERATURE, EPS, MAX_NEW = 4, 0.7, 0.2, 16
LENGTHS = [3, 7, 5, 9, 4, 8, 6, 2]  # one completion per (prompt, sample)


def _completions(vocab_size: int) -> list[list[int]]:
    """Fixed completions: seeded ids that avoid the 4 special tokens."""
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(4, vocab_size, (n,), generator=generator).tolist() for n in LENGTHS]


def length_reward(completion_ids, **kwargs) -> list[float]:
    """A deterministic reward with spread in every group: length / 10."""
    return [len(ids) / 10 for ids in completion_ids]


def _stale(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """π_old: the current log-probs moved by up to ±0.5 nats, so some ratios leave 1 ± ε."""
    shift = torch.rand(logps.shape, generator=torch.Generator().manual_seed(2)) - 0.5
    return (logps + shift) * mask


def _trl_step(model_dir, out_dir, beta: float, stale: bool, scale_rewards: str = "none"):
    """TRL's loss and LoRA gradients on the fixed completions, with what the prefalign
    side needs: the prompt ids it scored, its LoRA weights, its advantages and π_old."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    config = GRPOConfig(output_dir=str(out_dir), per_device_train_batch_size=GROUP * len(PROMPTS),
                        num_generations=GROUP, max_completion_length=MAX_NEW,
                        temperature=TEMPERATURE, beta=beta, epsilon=EPS, loss_type="dapo",
                        scale_rewards=scale_rewards, use_bias_correction_kl=False, bf16=False,
                        use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=length_reward, args=config,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
                          processing_class=tokenizer, peft_config=_lora_config())
    with torch.no_grad():  # non-zero B, so every adapter matrix gets a gradient and KL ≠ 0
        generator = torch.Generator().manual_seed(0)
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    completions, prompt_ids = _completions(len(tokenizer)), []

    def fixed_generation(ids, *args, **kwargs):
        prompt_ids.extend(ids)
        return completions, None

    trainer._generate_single_turn = fixed_generation
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS for _ in range(GROUP)]
    batch = trainer._generate_and_score_completions(rows)
    if stale:
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        with torch.no_grad():
            logps = trainer._get_per_token_logps_and_entropies(
                trainer.model, ids, mask, batch["completion_ids"].shape[1])[0]
        batch["old_per_token_logps"] = _stale(logps, batch["completion_mask"])
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    weights = {name: param.detach().clone() for name, param in trainer.model.named_parameters()
               if "lora_" in name}
    return SimpleNamespace(loss=float(loss.detach()), grads=_lora_grads(trainer.model),
                           prompt_ids=prompt_ids[::GROUP], completions=completions,
                           weights=weights, advantages=batch["advantages"],
                           old_logps=batch.get("old_per_token_logps"), tokenizer=tokenizer)


def _prefalign_step(model_dir, tmp_path, trl, beta: float, algorithm_spec=GRPO,
                    settings=("kl.estimator=k3", "policy.reduction=token",
                              "policy.normalize_std=false")):
    """prefalign's step of ``algorithm_spec`` (``RolloutAlgorithm.step``, default GRPO) on
    TRL's prompts and completions; π_old is TRL's when ``trl`` carries one."""
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                              attn_implementation="sdpa")
    lm = get_peft_model(lm, _lora_config())
    with torch.no_grad():
        for name, param in lm.named_parameters():
            if "lora_" in name:
                param.copy_(trl.weights[name])
    policy = PolicyModel(lm, temperature=TEMPERATURE)
    prompts = len(PROMPTS)
    cfg = load_online_config(algorithm_spec.name, None, [
        f"model.name={model_dir}", "data.train=builtin:arithmetic?n=8&seed=0",
        "rewards=[{name: arithmetic}]", f"rollout.prompts_per_rollout={prompts}",
        f"rollout.num_samples={GROUP}", f"rollout.max_new_tokens={MAX_NEW}",
        f"rollout.temperature={TEMPERATURE}", f"train.batch_size={prompts * GROUP}",
        f"kl.coef={beta}", f"policy.clip_eps={EPS}", *settings])
    setup = SimpleNamespace(cfg=cfg, records=[{}] * prompts, run=SimpleNamespace(root=tmp_path),
                            policy=policy, reference=ReferencePolicy(policy),
                            autocast=contextlib.nullcontext)
    algorithm = RolloutAlgorithm(setup, algorithm_spec)
    tensors = pack_groups(trl.prompt_ids, trl.completions, trl.tokenizer.pad_token_id)
    rewards = torch.tensor(length_reward(trl.completions))
    rollout = Rollout(0, 1, [{}] * len(rewards), [], tensors, rewards, GROUP)
    algorithm._record_logps(rollout)  # π_ref when β > 0; π_old is π_θ detached
    algorithm._prepare(rollout)  # β and the group advantages
    if hasattr(trl, "old_logps"):
        rollout.old_logps = trl.old_logps
    policy.train()
    out = algorithm.step(policy, MicroBatch(rollout, list(range(prompts)),
                                            group_rows(range(prompts), GROUP), index=0))
    out.loss.backward()
    return out, rollout, _lora_grads(lm)


@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_first_step_loss_and_lora_gradients_match_trl(tmp_path, tiny_model_dir, beta, stale):
    trl = _trl_step(tiny_model_dir, tmp_path / "trl", beta, stale)
    assert trl.prompt_ids == encode_prompts([{"prompt": p} for p in PROMPTS], trl.tokenizer)
    out, rollout, grads = _prefalign_step(tiny_model_dir, tmp_path, trl, beta)

    torch.testing.assert_close(rollout.advantages, trl.advantages, rtol=0, atol=1e-6)
    if stale:
        assert 0 < out.metrics["policy/clip_frac"] < 1
    assert abs(float(out.loss.detach()) - trl.loss) <= 1e-4 * abs(trl.loss)
    assert grads.keys() == trl.grads.keys() and len(grads) == 2 * len(TARGETS) * 2
    for name, want in trl.grads.items():
        scale = float(want.abs().max())
        assert scale > 0, name
        assert float((grads[name] - want).abs().max()) <= 1e-4 * scale, name


def test_group_scaled_advantages_differ_only_by_the_std_convention(tmp_path, tiny_model_dir):
    """TRL's ``scale_rewards="group"`` against prefalign's ``normalize_std=true``: the
    same centred rewards over a Bessel-corrected std (+1e-4) vs the population std (+1e-6)."""
    trl = _trl_step(tiny_model_dir, tmp_path / "trl", 0.0, False, scale_rewards="group")
    rollout = Rollout(0, 1, [], [], {}, torch.tensor(length_reward(trl.completions)), GROUP)
    GRPO.advantages(rollout, SimpleNamespace(policy=SimpleNamespace(normalize_std=True)))
    ratio = trl.advantages / rollout.advantages
    torch.testing.assert_close(ratio, torch.full_like(ratio, math.sqrt((GROUP - 1) / GROUP)),
                               rtol=2e-3, atol=0)
