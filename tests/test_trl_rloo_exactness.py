"""prefalign's RLOO step against TRL's ``RLOOTrainer`` (the benchmark's other peer): the
same weights, prompts, completions and rewards give the same advantages and, on the
first (on-policy) step, the same LoRA gradients up to the constant the two loss
normalisations differ by.

RLOO: Ahmadian et al. 2024, arXiv 2402.14740. Both sides subtract β·Σ_t (log π_old −
log π_ref) from each reward (the reference being the policy with its adapters
disabled) and take the leave-one-out baseline ``A_j = r_j − mean_{k≠j} r_k``. The
losses differ by design: TRL clips one sequence-level ratio ``exp(Σ_t log π/π_old)``
and averages over the B sequences; prefalign clips per token and, with
``policy.reduction=constant``, divides the token sum by ``B·L`` (L =
``rollout.max_new_tokens``). On-policy every ratio is 1, so

    ∇L_TRL = −(1/B) Σ_j A_j Σ_t ∇log π(y_jt)    ∇L_prefalign = ∇L_TRL / L

and the loss values are −mean_j A_j (= 0: leave-one-out advantages sum to zero in
each group) and −Σ_j A_j·|y_j| / (B·L). The test checks both gradients and both loss
values against these formulas, TRL's generation replaced by fixed completions.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from tests.test_trl_exactness import _lora_config, _lora_grads
from tests.test_trl_grpo_exactness import (
    EPS,
    GROUP,
    LENGTHS,
    MAX_NEW,
    PROMPTS,
    TARGETS,
    TEMPERATURE,
    _completions,
    _prefalign_step,
    length_reward,
)
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import RLOOConfig, RLOOTrainer

from prefalign.rollout.batch import encode_prompts
from prefalign.stages.online.algorithms.rloo import RLOO


def _trl_step(model_dir, out_dir, beta: float):
    """TRL's RLOO loss and LoRA gradients on the fixed completions, with its LoRA
    weights, advantages and the prompt ids it scored."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    config = RLOOConfig(output_dir=str(out_dir), per_device_train_batch_size=GROUP * len(PROMPTS),
                        num_generations=GROUP, max_completion_length=MAX_NEW,
                        temperature=TEMPERATURE, beta=beta, epsilon=EPS, bf16=False,
                        use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = RLOOTrainer(model=model, reward_funcs=length_reward, args=config,
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
        return completions

    trainer._generate_single_turn = fixed_generation
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS for _ in range(GROUP)]
    batch = trainer._generate_and_score_completions(rows)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    weights = {name: param.detach().clone() for name, param in trainer.model.named_parameters()
               if "lora_" in name}
    return SimpleNamespace(loss=float(loss.detach()), grads=_lora_grads(trainer.model),
                           prompt_ids=prompt_ids[::GROUP], completions=completions,
                           weights=weights, advantages=batch["advantages"], tokenizer=tokenizer)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_first_step_rloo_gradients_match_trl_up_to_the_normaliser(tmp_path, tiny_model_dir,
                                                                  beta):
    trl = _trl_step(tiny_model_dir, tmp_path / "trl", beta)
    assert trl.prompt_ids == encode_prompts([{"prompt": p} for p in PROMPTS], trl.tokenizer)
    out, rollout, grads = _prefalign_step(tiny_model_dir, tmp_path, trl, beta, RLOO,
                                          ("policy.reduction=constant",))

    torch.testing.assert_close(rollout.advantages, trl.advantages, rtol=0, atol=1e-6)
    advantages = trl.advantages.double()
    if beta == 0.0:  # the rewards alone: length / 10, leave-one-out by hand
        rewards = torch.tensor(LENGTHS, dtype=torch.float64).view(-1, GROUP) / 10
        baseline = (rewards.sum(1, keepdim=True) - rewards) / (GROUP - 1)
        torch.testing.assert_close(advantages, (rewards - baseline).reshape(-1),
                                   rtol=0, atol=1e-6)
    batch = len(LENGTHS)
    assert abs(trl.loss - float(-advantages.mean())) <= 1e-6
    lengths = torch.tensor(LENGTHS, dtype=torch.float64)
    want_loss = float(-(advantages * lengths).sum() / (batch * MAX_NEW))
    assert abs(float(out.loss.detach()) - want_loss) <= 1e-4 * abs(want_loss)
    assert grads.keys() == trl.grads.keys() and len(grads) == 2 * len(TARGETS) * 2
    for name, want in trl.grads.items():
        scale = float(want.abs().max())
        assert scale > 0, name
        assert float((MAX_NEW * grads[name] - want).abs().max()) <= 1e-4 * scale, name
