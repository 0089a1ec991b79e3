"""prefalign's DPO step against TRL's ``DPOTrainer`` (the benchmark's peer): the same
weights and the same batch give the same loss and the same LoRA gradients. trl is in
the ``dev`` extra, so this runs wherever the test suite does (it is never skipped)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from prefalign.config import LossConfig
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.preference import PreferenceAlgorithm, Reference

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
ROWS = [
    {"prompt": "What is 12 + 7? ", "chosen": "The answer is 19.", "rejected": "It is 20, I think."},
    {"prompt": "How do I bake bread? ", "chosen": "Mix flour, water, yeast and salt, then bake.",
     "rejected": "Sorry."},
    {"prompt": "Please answer the question: what is 3 * 4? ", "chosen": "12",
     "rejected": "The answer is 7, because 3 + 4 = 7."},
    {"prompt": "Here is a short poem about the sea. ", "chosen": "The quick brown fox.",
     "rejected": "I cannot help with that."},
]


def _lora_config() -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                      task_type="CAUSAL_LM")


def _lora_grads(model) -> dict[str, torch.Tensor]:
    return {name: param.grad.detach().clone() for name, param in model.named_parameters()
            if "lora_" in name}


def _trl_step(model_dir, out_dir):
    """TRL's first-step loss and LoRA gradients, its tokenised pairs and its LoRA weights."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    config = DPOConfig(output_dir=str(out_dir), per_device_train_batch_size=len(ROWS), beta=0.1,
                       loss_type=["sigmoid"], bf16=False, use_cpu=True, report_to="none",
                       save_strategy="no", disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(ROWS),
                         processing_class=tokenizer, peft_config=_lora_config())
    with torch.no_grad():  # non-zero B, so every adapter matrix gets a gradient
        generator = torch.Generator().manual_seed(0)
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    rows = [trainer.train_dataset[i] for i in range(len(ROWS))]
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, trainer.data_collator(rows))
    loss.backward()
    examples = [{key: list(row[key]) for key in ("prompt_ids", "chosen_ids", "rejected_ids")}
                for row in rows]
    weights = {name: param.detach().clone() for name, param in trainer.model.named_parameters()
               if "lora_" in name}
    pad_id = tokenizer.pad_token_id
    return float(loss.detach()), _lora_grads(trainer.model), examples, weights, pad_id


@pytest.mark.parametrize("prefix_sharing", [True, False])
def test_first_step_loss_and_lora_gradients_match_trl(tmp_path, tiny_model_dir, prefix_sharing):
    trl_loss, trl_grads, examples, weights, pad_id = _trl_step(tiny_model_dir, tmp_path)

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                              attn_implementation="sdpa")
    lm = get_peft_model(lm, _lora_config())
    with torch.no_grad():
        for name, param in lm.named_parameters():
            if "lora_" in name:
                param.copy_(weights[name])
    policy = CompletionLogprobModel(lm)
    algorithm = PreferenceAlgorithm(examples, [], LossConfig(name="dpo", beta=0.1),
                                    Reference("adapter_disabled"), pad_id,
                                    batch_size=len(examples), seed=0,
                                    prefix_sharing=prefix_sharing)
    policy.train()
    out = algorithm.step(policy, algorithm._collate(examples, list(range(len(examples))), None))
    out.loss.backward()
    grads = _lora_grads(lm)

    assert abs(float(out.loss) - trl_loss) <= 1e-4 * abs(trl_loss)
    assert grads.keys() == trl_grads.keys() and len(grads) == 2 * len(TARGETS) * 2
    for name, want in trl_grads.items():
        scale = float(want.abs().max())
        assert scale > 0, name
        assert float((grads[name] - want).abs().max()) <= 1e-4 * scale, name
