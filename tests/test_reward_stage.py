"""Reward-model training, saving, loading and scoring on a tiny random model."""

from __future__ import annotations

import json

import pytest
import torch
from tests.conftest import write_jsonl

from prefalign.config import RewardConfig, load_config
from prefalign.data.collate import pad_right
from prefalign.data.tokenize import encode_preference
from prefalign.errors import ConfigError, DataError, ModelError
from prefalign.models import ScalarHeadModel, load_model
from prefalign.rewards import RewardModel, build_reward
from prefalign.rewards.features import last_token_features
from prefalign.stages.reward import run_reward
from prefalign.stages.reward_algorithms import FeaturePairs, PairwiseRewardAlgorithm, TokenPairs
from prefalign.tasks import arithmetic


def _config(tmp_path, model_dir, train, *overrides) -> RewardConfig:
    return load_config(RewardConfig, None, [
        f"model.name={model_dir}", f"data.train={train}", f"output_dir={tmp_path / 'runs'}",
        "data.eval_fraction=0.25", "train.max_steps=3", "train.batch_size=8",
        "train.save_every=0", "train.lr=1e-3", *overrides])


def _tiny_head_model(model_dir) -> tuple[ScalarHeadModel, object]:
    lm, tokenizer = load_model(str(model_dir))
    return ScalarHeadModel.from_causal_lm(lm).eval(), tokenizer


def test_cached_features_give_the_same_scores_as_the_full_forward(tiny_model_dir):
    model, tokenizer = _tiny_head_model(tiny_model_dir)
    sequences = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18]]
    features = last_token_features(model, sequences, tokenizer.pad_token_id, batch_size=3)
    ids = pad_right(sequences, tokenizer.pad_token_id)
    mask = pad_right([[1] * len(s) for s in sequences], 0)
    with torch.no_grad():
        direct = model(ids, mask)
        via_features = model.head(features).squeeze(-1)
    torch.testing.assert_close(via_features, direct, rtol=1e-5, atol=1e-6)


def test_frozen_head_training_on_features_is_exact(tiny_model_dir):
    """Loss and head gradient on cached features equal those through the frozen backbone."""
    model, tokenizer = _tiny_head_model(tiny_model_dir)
    model.freeze_backbone()
    records = arithmetic.preference_records(6, seed=2)
    for index, record in enumerate(records):
        record["margin"] = 0.1 * index
    examples = [encode_preference(r, tokenizer) for r in records]
    tokens = TokenPairs(examples, tokenizer.pad_token_id)
    pad = tokenizer.pad_token_id
    chosen = last_token_features(model, [e["prompt_ids"] + e["chosen_ids"] for e in examples], pad)
    rejected = last_token_features(model, [e["prompt_ids"] + e["rejected_ids"] for e in examples],
                                   pad)
    features = FeaturePairs(chosen, rejected, torch.tensor([e["margin"] for e in examples]))
    indices = [4, 0, 2, 5]
    gradients, losses = [], []
    for source, module in ((tokens, model), (features, model.head)):
        algorithm = PairwiseRewardAlgorithm(source, None, 4, 0, use_margin=True,
                                            center_coef=0.05)
        model.head.zero_grad()
        out = algorithm.step(module, source.collate(indices))
        out.loss.backward()
        losses.append(out.loss.detach())
        gradients.append(model.head.weight.grad.clone())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-4, atol=1e-6)
    # and both equal the loss written out by hand in float64
    with torch.no_grad():
        r_c = model.head(chosen[indices]).squeeze(-1).double()
        r_r = model.head(rejected[indices]).squeeze(-1).double()
    m = torch.tensor([0.1 * i for i in indices], dtype=torch.float64)
    by_hand = (torch.log1p(torch.exp(-(r_c - r_r - m))) + 0.05 * (r_c + r_r) ** 2).mean()
    assert losses[1].item() == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_trained_model_scores_held_out_pairs_as_training_evaluated_them(
        tmp_path, tiny_model_dir, preference_file, tuning):
    cfg = _config(tmp_path, tiny_model_dir, preference_file, f"tuning={tuning}", "name=rm")
    result = run_reward(cfg)
    run_dir = tmp_path / "runs" / "rm"
    done = json.loads((run_dir / "done.json").read_text())
    assert 0.0 <= result.eval_metrics["accuracy"] <= 1.0
    final = run_dir / "final"
    assert (final / ("adapter_config.json" if tuning == "lora" else "config.json")).is_file()
    model = RewardModel.load(final)
    from prefalign.data.split import HELD_OUT_SALT, split_records
    from prefalign.tasks import load_source

    held_out = split_records(load_source(str(preference_file), "preference"),
                             {"train": 0.75, "eval": 0.25}, 0, salt=HELD_OUT_SALT)["eval"]
    assert json.loads((run_dir / "eval.json").read_text())["pairs"] == len(held_out) > 0
    prompts = [r["prompt"] for r in held_out]
    chosen = model.score(prompts, [r["chosen"] for r in held_out], batch_size=5)
    rejected = model.score(prompts, [r["rejected"] for r in held_out], batch_size=3)
    torch.testing.assert_close(chosen, torch.tensor(done["eval_values"][0]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rejected, torch.tensor(done["eval_values"][1]),
                               rtol=1e-4, atol=1e-4)
    reward = build_reward("rm", path=str(final), batch_size=4)
    assert reward.bounded is False
    rows = [{"prompt": p} for p in prompts]
    torch.testing.assert_close(reward(["ignored"] * len(rows), [r["chosen"] for r in held_out],
                                      rows), chosen)


def test_frozen_ensemble_shares_one_backbone_and_penalises_disagreement(
        tmp_path, tiny_model_dir, preference_file):
    cfg = _config(tmp_path, tiny_model_dir, preference_file, "tuning=frozen", "name=ens",
                  "ensemble.k=3", "ensemble.penalty=0.5", "train.max_steps=5")
    result = run_reward(cfg)
    final = tmp_path / "runs" / "ens" / "final"
    assert sorted(p.name for p in final.iterdir() if p.is_dir()) == [
        "member-0", "member-1", "member-2"]
    assert not (final / "member-0" / "config.json").exists()  # head only; backbone shared
    model = RewardModel.load(final)
    assert model.num_members == 3 and len(model.backbones) == 1 and model.penalty == 0.5
    prompts, responses = ["What is 2 + 2?"] * 2, ["4", "The answer is 5."]
    scores = model.score_ensemble(prompts, responses)
    members = scores.members.double()
    assert not torch.allclose(members[0], members[1])  # seeds differ
    mean, std = members.mean(0), members.std(0, correction=0)
    torch.testing.assert_close(model.score(prompts, responses).double(), mean - 0.5 * std,
                               rtol=1e-5, atol=1e-6)
    assert result.eval_metrics["ensemble_std_mean"] > 0
    assert "penalised_accuracy" in result.eval_metrics
    single = _config(tmp_path, tiny_model_dir, preference_file, "tuning=frozen", "name=one",
                     "train.max_steps=5")
    run_reward(single)
    one = RewardModel.load(tmp_path / "runs" / "one" / "final")
    torch.testing.assert_close(one.score(prompts, responses), scores.members[0])


def test_regression_mode_on_rated_data(tmp_path, tiny_model_dir):
    rows = [{"prompt": f"Rate answer {i}", "response": "word " * (i % 5 + 1), "score": i % 5}
            for i in range(40)]
    data = write_jsonl(tmp_path / "rated.jsonl", rows[:32])
    held_out = write_jsonl(tmp_path / "rated-eval.jsonl", rows[32:])
    cfg = _config(tmp_path, tiny_model_dir, data, "tuning=frozen", "objective=regression",
                  "name=reg", "train.max_steps=20", "train.lr=1e-2", f"data.eval={held_out}")
    result = run_reward(cfg)
    assert "pearson" in result.eval_metrics
    meta = json.loads((tmp_path / "runs" / "reg" / "final" / "reward_model.json").read_text())
    assert meta["objective"] == "regression"
    scores = [i % 5 for i in range(32)]
    mean = sum(scores) / 32
    assert meta["score_mean"] == pytest.approx(mean)
    assert meta["score_std"] == pytest.approx((sum((x - mean) ** 2 for x in scores) / 32) ** 0.5)
    assert result.eval_metrics["responses"] == 8


def test_rated_data_with_a_non_numeric_score_is_a_clear_error(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "rated.jsonl", [
        {"prompt": "a", "response": "b", "score": 3},
        {"prompt": "c", "response": "d", "score": "excellent"}])
    cfg = _config(tmp_path, tiny_model_dir, data, "objective=regression", "tuning=frozen")
    with pytest.raises(DataError, match=r"rated.jsonl:2: field 'score': expected a number"):
        run_reward(cfg)


def test_a_pair_without_rejected_is_a_clear_error(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "d", "chosen": "e"}])
    cfg = _config(tmp_path, tiny_model_dir, data, "tuning=frozen")
    with pytest.raises(DataError, match=r"pairs.jsonl:2: field 'rejected': missing"):
        run_reward(cfg)


def test_a_path_that_is_not_a_reward_model_is_a_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="language model or adapter, not a reward model"):
        RewardModel.load(tiny_model_dir)
    with pytest.raises(ModelError, match="reward model not found"):
        RewardModel.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a reward model"):
        RewardModel.load(tmp_path / "empty")
    with pytest.raises(ConfigError, match="tuning=lora needs model.lora"):
        run_reward(_config(tmp_path, tiny_model_dir, "x.jsonl", "model.lora=null"))


def test_an_interrupted_ensemble_resumes_with_the_members_still_missing(
        tmp_path, tiny_model_dir, preference_file):
    import shutil

    cfg = _config(tmp_path, tiny_model_dir, preference_file, "tuning=frozen", "name=res",
                  "ensemble.k=2")
    run_reward(cfg)
    run_dir = tmp_path / "runs" / "res"
    before = RewardModel.load(run_dir / "final").score(["What is 1 + 1?"], ["2"])
    (run_dir / "member-1" / "done.json").unlink()
    shutil.rmtree(run_dir / "final" / "member-1")
    mtime = (run_dir / "final" / "member-0" / "scalar_head.safetensors").stat().st_mtime_ns
    with pytest.raises(Exception, match="--resume"):
        run_reward(cfg)
    run_reward(cfg, resume=True)
    assert (run_dir / "final" / "member-0" / "scalar_head.safetensors").stat().st_mtime_ns \
        == mtime
    after = RewardModel.load(run_dir / "final").score(["What is 1 + 1?"], ["2"])
    torch.testing.assert_close(after, before)  # same seeds, same data: same members


def test_prefix_shared_pairs_give_the_two_row_rewards_and_gradients(tiny_model_dir):
    """One [prompt | chosen | rejected] row per pair scores each completion exactly as
    its own prompt + completion row does, and the Bradley-Terry gradients agree."""
    model, tokenizer = _tiny_head_model(tiny_model_dir)
    model.train()
    examples = [
        {"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9], "rejected_ids": [10, 11, 12, 13]},
        {"prompt_ids": [14, 15, 16, 17, 18], "chosen_ids": [19, 20, 21], "rejected_ids": [22]},
        {"prompt_ids": [23], "chosen_ids": [24, 25, 26, 27, 28], "rejected_ids": [29, 30]},
    ]
    pad = tokenizer.pad_token_id
    results = {}
    for sharing in (False, True):
        pairs = TokenPairs(examples, pad, prefix_sharing=sharing)
        model.zero_grad()
        chosen, rejected, _ = pairs.rewards(model, pairs.collate([0, 1, 2]))
        loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        results[sharing] = (chosen.detach(), rejected.detach(), grads)
    # Two-row reference by hand: each prompt + completion alone, value at its last token.
    with torch.no_grad():
        for i, e in enumerate(examples):
            for key, values in (("chosen_ids", results[True][0]),
                                ("rejected_ids", results[True][1])):
                row = torch.tensor([e["prompt_ids"] + e[key]])
                torch.testing.assert_close(values[i], model(row)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-5, atol=1e-5)
    assert results[True][2].keys() == results[False][2].keys()
    for name, grad in results[False][2].items():
        torch.testing.assert_close(results[True][2][name], grad, rtol=1e-4, atol=1e-6)


def test_trainable_parameters_are_counted_for_each_tuning(tmp_path, tiny_model_dir,
                                                          preference_file):
    from transformers import AutoModelForCausalLM

    counts = {}
    for tuning in ("frozen", "lora", "full"):
        cfg = _config(tmp_path, tiny_model_dir, preference_file, f"tuning={tuning}",
                      f"name={tuning}", "train.max_steps=1")
        counts[tuning] = run_reward(cfg).eval_metrics["trainable_parameters"]
        evaluated = json.loads((tmp_path / "runs" / tuning / "eval.json").read_text())
        assert evaluated["trainable_parameters"] == counts[tuning]
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    hidden = lm.config.hidden_size
    backbone = sum(p.numel() for p in lm.model.parameters())
    assert counts["frozen"] == hidden + 1  # the head: weight and bias
    assert counts["full"] == backbone + hidden + 1
    assert counts["frozen"] < counts["lora"] < counts["full"]
