"""Prefix sharing: one row [prompt | chosen | rejected] per pair gives the same log-probs,
DPO loss and LoRA gradients as scoring prompt+chosen and prompt+rejected on their own."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from prefalign.config import LossConfig, PreferenceConfig
from prefalign.data.collate_shared import (
    CHOSEN,
    PAD,
    PROMPT,
    REJECTED,
    collate_preference_shared,
    shared_prefix_mask,
)
from prefalign.engine.metrics import read_metrics
from prefalign.models.lora import LoraSettings
from prefalign.models.tiny import tiny_model
from prefalign.models.token_logprobs import CompletionLogprobModel, attention_mask_4d
from prefalign.stages.preference import PreferenceAlgorithm, Reference, run_preference
from prefalign.stages.reference import compute_reference_logps

BETA = 0.1
VOCAB = 61


def _examples(count: int = 5, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    draw = lambda low, high: [rng.randrange(1, VOCAB) for _ in range(rng.randint(low, high))]
    examples = [{"prompt_ids": draw(2, 9), "chosen_ids": draw(1, 7), "rejected_ids": draw(1, 7)}
                for _ in range(count)]
    examples[0]["chosen_ids"], examples[0]["rejected_ids"] = [5], [7]  # one-token completions
    return examples


def _lora_policy(attention: str = "sdpa") -> CompletionLogprobModel:
    from peft import LoraConfig, get_peft_model

    lm = tiny_model(VOCAB, seed=3)
    lm.config._attn_implementation = attention
    settings = LoraSettings(r=4, alpha=8)
    lm = get_peft_model(lm, LoraConfig(r=settings.r, lora_alpha=settings.alpha,
                                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():  # non-zero B so the adapters change the function
        generator = torch.Generator().manual_seed(1)
        for name, param in lm.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return CompletionLogprobModel(lm)


def _independent_sum(lm, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """log p(completion | prompt) from the plain model's full logits, one unpadded sequence,
    log-softmax in float64."""
    ids = torch.tensor([prompt + completion])
    logits = lm(input_ids=ids, use_cache=False).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    targets = ids[0, 1:]
    per_token = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return per_token[len(prompt) - 1:].sum()


def _independent_sums(lm, examples) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = torch.stack([_independent_sum(lm, e["prompt_ids"], e["chosen_ids"])
                          for e in examples])
    rejected = torch.stack([_independent_sum(lm, e["prompt_ids"], e["rejected_ids"])
                            for e in examples])
    return chosen, rejected


def _shared_sums(policy, examples) -> tuple[torch.Tensor, torch.Tensor]:
    batch = collate_preference_shared(examples, pad_id=0)
    per_token = policy(batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                       batch["position_ids"], batch["predictor_positions"])
    segments = batch["segment_ids"]
    return ((per_token * (segments == CHOSEN)).sum(-1),
            (per_token * (segments == REJECTED)).sum(-1))


def _dpo_loss(chosen, rejected, ref_chosen, ref_rejected) -> torch.Tensor:
    """Rafailov et al. 2023: mean −log σ(β[(πc − refc) − (πr − refr)]), in float64."""
    h = (chosen.double() - ref_chosen.double()) - (rejected.double() - ref_rejected.double())
    return -F.logsigmoid(BETA * h).mean()


def _lora_grads(policy) -> list[torch.Tensor]:
    return [p.grad.clone() for n, p in policy.named_parameters() if "lora_" in n]


def _assert_close_relative(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    scale = want.double().abs().max().clamp(min=1e-12)
    assert float((got.double() - want.double()).abs().max() / scale) < tol


def test_layout_of_one_pair():
    batch = collate_preference_shared([{"prompt_ids": [11, 12, 13], "chosen_ids": [21, 22],
                                        "rejected_ids": [31, 32, 33]},
                                       {"prompt_ids": [14], "chosen_ids": [23],
                                        "rejected_ids": [34]}], pad_id=0)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22, 31, 32, 33],
                                           [14, 23, 34, 0, 0, 0, 0, 0]]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 3, 4, 5]
    assert batch["position_ids"][1, :3].tolist() == [0, 1, 1]
    assert batch["segment_ids"][0].tolist() == [PROMPT] * 3 + [CHOSEN] * 2 + [REJECTED] * 3
    assert batch["segment_ids"][1].tolist() == [PROMPT, CHOSEN, REJECTED] + [PAD] * 5
    assert batch["completion_mask"][0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    # token 5 (first rejected) is predicted from the last prompt token (position 2)
    assert batch["predictor_positions"][0, 3:].tolist() == [2, 3, 2, 5, 6]
    assert batch["predictor_positions"][1, 1:3].tolist() == [0, 0]
    mask = batch["attention_mask"][0, 0].int().tolist()
    assert mask == [[1, 0, 0, 0, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0, 0, 0, 0],
                    [1, 1, 1, 0, 0, 0, 0, 0],
                    [1, 1, 1, 1, 0, 0, 0, 0],
                    [1, 1, 1, 1, 1, 0, 0, 0],
                    [1, 1, 1, 0, 0, 1, 0, 0],
                    [1, 1, 1, 0, 0, 1, 1, 0],
                    [1, 1, 1, 0, 0, 1, 1, 1]]
    assert batch["chosen_lengths"].tolist() == [2, 1]
    assert batch["rejected_lengths"].tolist() == [3, 1]


def test_every_query_attends_to_itself():
    segments = torch.tensor([[PROMPT, CHOSEN, REJECTED, PAD, PAD]], dtype=torch.int8)
    assert bool(shared_prefix_mask(segments)[0, 0].diagonal().all())


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="empty prompt"):
        collate_preference_shared([{"prompt_ids": [], "chosen_ids": [1], "rejected_ids": [2]}], 0)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_sums_equal_independent_sequences(attention):
    torch.manual_seed(0)
    policy = _lora_policy(attention)
    examples = _examples()
    with torch.no_grad():
        want_c, want_r = _independent_sums(policy.lm, examples)
        got_c, got_r = _shared_sums(policy, examples)
    _assert_close_relative(got_c, want_c)
    _assert_close_relative(got_r, want_r)


def test_dpo_loss_and_lora_gradients_equal_independent_computation():
    policy = _lora_policy()
    examples = _examples(6, seed=4)
    ref_c = torch.linspace(-30.0, -10.0, len(examples))
    ref_r = torch.linspace(-12.0, -28.0, len(examples))

    policy.zero_grad()
    want_loss = _dpo_loss(*_independent_sums(policy.lm, examples), ref_c, ref_r)
    want_loss.backward()
    want_grads = _lora_grads(policy)

    policy.zero_grad()
    got_loss = _dpo_loss(*_shared_sums(policy, examples), ref_c, ref_r)
    got_loss.backward()
    got_grads = _lora_grads(policy)

    assert float(abs(got_loss.detach() - want_loss.detach()) / abs(want_loss.detach())) < 1e-5
    assert len(got_grads) == len(want_grads) > 0
    for got, want in zip(got_grads, want_grads):
        _assert_close_relative(got, want)


def test_stage_step_is_the_same_with_and_without_sharing():
    policy = _lora_policy()
    examples = _examples(4, seed=7)
    reference = Reference("adapter_disabled")
    results = []
    for sharing in (False, True):
        algorithm = PreferenceAlgorithm(examples, [], LossConfig(name="dpo", beta=BETA),
                                        reference, pad_id=0, batch_size=4, seed=0,
                                        prefix_sharing=sharing)
        policy.zero_grad()
        out = algorithm.step(policy, algorithm._collate(examples, [0, 1, 2, 3], None))
        out.loss.backward()
        results.append((out, _lora_grads(policy)))
    (plain, plain_grads), (shared, shared_grads) = results
    assert float(abs(shared.loss - plain.loss)) < 1e-5 * float(abs(plain.loss))
    assert shared.tokens == plain.tokens
    for key in ("logps/chosen", "logps/rejected", "rewards/margin"):
        assert shared.metrics[key] == pytest.approx(plain.metrics[key], rel=1e-5, abs=1e-6)
    for got, want in zip(shared_grads, plain_grads):
        _assert_close_relative(got, want)


def test_reference_pass_keeps_data_order():
    policy = _lora_policy()
    examples = _examples(7, seed=9)
    with torch.no_grad(), policy.reference_context():
        want_c, want_r = _independent_sums(policy.lm, examples)
        chosen, rejected, passes = compute_reference_logps(policy, examples, pad_id=0,
                                                           batch_size=3)
    assert passes == 3
    _assert_close_relative(chosen, want_c)
    _assert_close_relative(rejected, want_r)


def test_bool_mask_becomes_additive_for_eager_attention():
    lm = tiny_model(VOCAB)
    mask = torch.tensor([[[[True, False], [True, True]]]])
    lm.config._attn_implementation = "sdpa"
    assert attention_mask_4d(lm, mask) is mask
    lm.config._attn_implementation = "eager"
    additive = attention_mask_4d(lm, mask)
    assert additive.dtype == torch.float32
    assert additive[0, 0, 0, 1] == torch.finfo(torch.float32).min and additive[0, 0, 1, 0] == 0
    lm.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="attention"):
        attention_mask_4d(lm, mask)


def test_training_run_matches_the_unshared_run(tmp_path, tiny_model_dir, preference_file,
                                               monkeypatch):
    """One batch holds every training pair, so both layouts train on the same batches; the
    second run finds the first run's reference log-probs under the same cache key."""
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    rows = {}
    for sharing in (False, True):
        cfg = PreferenceConfig.model_validate({
            "name": f"sharing-{sharing}", "output_dir": str(tmp_path / "runs"),
            "prefix_sharing": sharing,
            "model": {"name": str(tiny_model_dir), "lora": {"r": 4, "alpha": 8}},
            "data": {"train": str(preference_file), "eval_fraction": 0.25, "max_length": 48,
                     "max_prompt_length": 32},
            "train": {"lr": 1e-3, "max_steps": 3, "batch_size": 64, "save_every": 0,
                      "threads": 1}})
        run_preference(cfg)
        rows[sharing] = read_metrics(cfg.run_dir / "metrics.jsonl")
    passes = [[r["reference/forward_passes"] for r in rows[s] if "reference/forward_passes" in r]
              for s in (False, True)]
    assert passes[0][0] > 0 and passes[1] == [0]
    for key in ("loss", "logps/chosen", "logps/rejected"):
        plain = [r[key] for r in rows[False] if "loss" in r]
        shared = [r[key] for r in rows[True] if "loss" in r]
        assert len(plain) == len(shared) == 3
        assert shared == pytest.approx(plain, rel=1e-4)
