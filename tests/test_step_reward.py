"""Step reward models (PRM / ORM): one-pass step scores, the losses against written-out
formulas, aggregation, ``steps`` records and training on a tiny random model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tests.conftest import write_jsonl

from prefalign.config import RewardConfig, load_config
from prefalign.data.schema import validate_record
from prefalign.errors import DataError
from prefalign.losses.process import aggregate, step_bce_loss, step_targets
from prefalign.models import ScalarHeadModel, load_model
from prefalign.rewards.steps import boundary_features, encode_steps
from prefalign.stages.reward import run_reward

SOLUTION = ["Half of 48 is 48/2 = <<48/2=24>>24.", "In all 48+24 = <<48+24=72>>72.",
            "So she sold 72 clips."]


def _tiny(model_dir) -> tuple[ScalarHeadModel, object]:
    lm, tokenizer = load_model(str(model_dir))
    return ScalarHeadModel.from_causal_lm(lm).eval(), tokenizer


def test_one_pass_step_scores_equal_scoring_each_prefix_alone(tiny_model_dir):
    model, tokenizer = _tiny(tiny_model_dir)
    question = "Natalia sold 48 clips in April and half as many in May. How many in all?"
    encoded = encode_steps(question, SOLUTION, tokenizer, max_length=512)
    short = encode_steps("What is 2+2?", ["2+2 = <<2+2=4>>4."], tokenizer, max_length=512)
    one_pass = boundary_features(model, [encoded, short], tokenizer.pad_token_id, batch_size=2)
    with torch.no_grad():
        whole = model.head(one_pass[0]).squeeze(-1)
        for k in range(len(SOLUTION)):
            prefix = encode_steps(question, SOLUTION[:k + 1], tokenizer, max_length=512)
            assert prefix.input_ids == encoded.input_ids[:prefix.boundaries[-1] + 1]
            alone = model(torch.tensor([prefix.input_ids]))
            torch.testing.assert_close(whole[k], alone[0], rtol=1e-5, atol=1e-5)


def test_process_and_outcome_losses_match_the_written_out_bce():
    logits = torch.tensor([[0.3, -1.2, 2.0], [1.5, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[1, 0, 0], [1, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    final = torch.tensor([0.0, 1.0])

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    targets, supervised = step_targets(labels, final, mask, "process")
    expected = (bce(0.3, 1) + bce(-1.2, 0) + bce(2.0, 0) + bce(1.5, 1)) / 4
    assert float(step_bce_loss(logits, targets, supervised)) == pytest.approx(expected, rel=1e-6)
    targets, supervised = step_targets(labels, final, mask, "outcome")
    assert supervised.tolist() == [[False, False, True], [True, False, False]]
    expected = (bce(2.0, 0) + bce(1.5, 1)) / 2
    assert float(step_bce_loss(logits, targets, supervised)) == pytest.approx(expected, rel=1e-6)


def test_aggregations():
    p = torch.tensor([0.9, 0.2, 0.5])
    assert aggregate(p, "min") == pytest.approx(0.2)
    assert aggregate(p, "mean") == pytest.approx((0.9 + 0.2 + 0.5) / 3)
    assert aggregate(p, "product") == pytest.approx(0.9 * 0.2 * 0.5)
    assert aggregate(p, "last") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(p, "max")


@pytest.mark.parametrize("row, field", [
    ({"prompt": "q", "labels": [1]}, "steps"),
    ({"prompt": "q", "steps": []}, "steps"),
    ({"prompt": "q", "steps": ["a", 3]}, "steps[1]"),
    ({"prompt": "q", "steps": ["a", "b"], "labels": [1]}, "labels"),
    ({"prompt": "q", "steps": ["a"], "labels": ["maybe"]}, "labels[0]"),
])
def test_a_bad_steps_record_names_file_line_and_field(row, field):
    with pytest.raises(DataError) as caught:
        validate_record(row, "steps", file="s.jsonl", line=7)
    message = str(caught.value)
    assert "s.jsonl" in message and "7" in message and field in message


def _records(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = i + 2, i + 3
        bad = i % 2 == 1
        second = a + b + (1 if bad else 0)
        rows.append({"prompt": f"What is {a}+{b}+1?",
                     "steps": [f"{a}+{b} = <<{a}+{b}={second}>>{second}.",
                               f"{second}+1 = <<{second}+1={second + 1}>>{second + 1}."],
                     "labels": [0, 0] if bad else [1, 1], "final_correct": not bad})
    return rows


@pytest.mark.parametrize("objective, tuning", [("process", "frozen"), ("outcome", "lora")])
def test_step_reward_models_train_and_save(tmp_path, tiny_model_dir, objective, tuning):
    data = write_jsonl(tmp_path / "steps.jsonl", _records(16))
    cfg = load_config(RewardConfig, None, [
        f"model.name={tiny_model_dir}", f"data.train={data}", f"output_dir={tmp_path / 'runs'}",
        "data.eval_fraction=0.25", "train.max_steps=4", "train.batch_size=4",
        "train.save_every=0", "train.lr=1e-2", f"objective={objective}", f"tuning={tuning}",
        "aggregation=min", "name=prm"])
    result = run_reward(cfg)
    assert result.step == 4
    final = tmp_path / "runs" / "prm" / "final"
    meta = json.loads((final / "step_reward_model.json").read_text())
    assert meta["objective"] == objective and meta["aggregation"] == "min"
    assert (final / "scalar_head.safetensors").is_file()
    assert result.eval_metrics["solutions"] == 4
    assert 0.0 <= result.eval_metrics["step_accuracy"] <= 1.0


def test_auroc_equals_the_pairwise_count():
    from prefalign.eval.prm import auroc

    scores = [0.9, 0.4, 0.4, 0.7, 0.1, 0.4, 0.8]
    labels = [1, 0, 1, 1, 0, 0, 0]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    brute = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(brute)


def test_best_of_constructed_picks_the_top_candidate_per_problem():
    from prefalign.eval.prm import best_of_constructed

    records = [{"prompt": "a", "problem": 0, "labels": [1, 1], "final_correct": True},
               {"prompt": "a", "problem": 0, "labels": [1, 0], "final_correct": True},
               {"prompt": "b", "problem": 1, "labels": [1, 1], "final_correct": True},
               {"prompt": "b", "problem": 1, "labels": [0, 0], "final_correct": False}]
    result = best_of_constructed(records, [0.2, 0.9, 0.1, 0.8])
    assert result["sets"] == 2
    assert result["correct_and_sound"]["k"] == 0 and result["correct_answer"]["k"] == 1


def test_rerank_samples_majority_and_oracle():
    from prefalign.eval.prm import majority_answer, rerank_samples, solution_steps

    problems = [{"prompt": "p", "answer": "6"}, {"prompt": "q", "answer": "10"}]
    samples = [["2*3 = 6\n#### 6", "2+3 = 5\n#### 5", "7\n#### 7"],
               ["#### 9", "#### 9", "#### 10"]]
    assert majority_answer(samples[1]) == "9"
    assert solution_steps("a = 1\n\n b = 2 \n#### 2") == ["a = 1", "b = 2"]
    result = rerank_samples(problems, samples, {"m": [[0.1, 0.9, 0.0], [0.0, 0.1, 0.5]]})
    rows = result["pass_at_1"]
    assert rows["first sample"]["k"] == 1 and rows["oracle pass@n"]["k"] == 2
    # problem 1: a three-way tie goes to the first answer (right); problem 2: 9 wins (wrong)
    assert rows["majority vote"]["k"] == 1 and rows["m rerank"]["k"] == 1


def test_eval_prm_command_compares_a_prm_and_an_orm(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from prefalign.cli.app import app

    data = write_jsonl(tmp_path / "steps.jsonl",
                       [{**r, "problem": i // 2, "kind": "reference" if r["final_correct"]
                         else "wrong_result", "first_wrong": None if r["final_correct"] else 0}
                        for i, r in enumerate(_records(12))])
    for objective in ("process", "outcome"):
        cfg = load_config(RewardConfig, None, [
            f"model.name={tiny_model_dir}", f"data.train={data}",
            f"output_dir={tmp_path / 'runs'}", "train.max_steps=2", "train.batch_size=4",
            "train.save_every=0", f"objective={objective}", "tuning=frozen",
            f"aggregation={'min' if objective == 'process' else 'last'}", f"name={objective}"])
        run_reward(cfg)
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "eval", "prm", "--model", f"prm={tmp_path / 'runs' / 'process'}",
        "--model", f"orm={tmp_path / 'runs' / 'outcome'}", "--data", str(data),
        "--policy", str(tiny_model_dir), "--problems", "builtin:arithmetic?n=3",
        "--samples", "2", "--max-new-tokens", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "prm_eval.json").read_text())
    assert set(summary["models"]) == {"prm", "orm"}
    for part in summary["models"].values():
        assert part["best_of_n"]["sets"] == 6 and part["steps"] == 24
    assert "critical case flagged" in (out / "prm_eval.md").read_text()
    rows = summary["samples"]["pass_at_1"]
    assert {"first sample", "majority vote", "oracle pass@n", "prm rerank", "orm rerank"} == set(
        rows)
    assert all(r["n"] == 3 and r["k"] <= rows["oracle pass@n"]["k"] for r in rows.values())
    stored = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert [len(s["samples"]) for s in stored] == [2, 2, 2]
    # a re-run keeps the samples it has; a torn file is sampled again, the same way
    before = (out / "samples.jsonl").read_text()
    args = ["eval", "prm", "--model", f"prm={tmp_path / 'runs' / 'process'}", "--data",
            str(data), "--policy", str(tiny_model_dir), "--problems", "builtin:arithmetic?n=3",
            "--samples", "2", "--max-new-tokens", "5", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (out / "samples.jsonl").read_text() == before
    (out / "samples.jsonl").write_text(before.splitlines()[0] + "\n" + before[:10])
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (out / "samples.jsonl").read_text() == before


def test_process_advantages_match_deepseekmath_written_out():
    from prefalign.losses.process import process_advantages

    rewards = [[0.9, 0.2], [0.5], [0.1, 0.3, 0.8], [0.7]]
    ends = [[1, 4], [2], [0, 1, 5], [3]]
    got = process_advantages(rewards, ends, group=2, length=6)
    for start in (0, 2):
        pool = [r for j in (start, start + 1) for r in rewards[j]]
        mean = sum(pool) / len(pool)
        std = math.sqrt(sum((r - mean) ** 2 for r in pool) / len(pool))
        for j in (start, start + 1):
            for t in range(6):
                want = sum((r - mean) / (std + 1e-6)
                           for r, e in zip(rewards[j], ends[j]) if e >= t)
                assert got[j, t].item() == pytest.approx(want, abs=1e-5)


def test_step_ends_point_at_the_token_holding_each_steps_last_character(tiny_model_dir):
    from prefalign.models import load_tokenizer
    from prefalign.stages.online.process_reward import step_spans, token_of_characters

    tokenizer = load_tokenizer(str(tiny_model_dir))
    text = "He has 3+4 = 7 apples.\n\nThen 7*2 = 14.\n#### 14"
    spans = step_spans(text)
    assert [s for s, _ in spans] == ["He has 3+4 = 7 apples.", "Then 7*2 = 14."]
    assert all(text[end] == "." for _, end in spans)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for (_, end), t in zip(spans, token_of_characters(tokenizer, ids, [e for _, e in spans])):
        assert len(tokenizer.decode(ids[:t + 1])) > end >= len(tokenizer.decode(ids[:t]))


def test_grpo_with_a_process_reward_model_trains_on_dense_advantages(tmp_path,
                                                                     tiny_model_dir):
    from prefalign.engine.metrics import read_metrics
    from prefalign.errors import ConfigError
    from prefalign.stages.online import run_online
    from prefalign.stages.online.registry import load_online_config

    data = write_jsonl(tmp_path / "steps.jsonl", _records(8))
    run_reward(load_config(RewardConfig, None, [
        f"model.name={tiny_model_dir}", f"data.train={data}", f"output_dir={tmp_path / 'runs'}",
        "train.max_steps=1", "train.batch_size=4", "train.save_every=0", "objective=process",
        "tuning=frozen", "name=prm"]))
    overrides = [
        f"model.name={tiny_model_dir}", "data.train=builtin:arithmetic?n=12&seed=0",
        "data.eval_fraction=0.25", "rewards=[{name: arithmetic}]", "rollout.max_new_tokens=6",
        "rollout.prompts_per_rollout=2", "rollout.num_samples=2", "train.batch_size=2",
        "train.grad_accum=2", "train.max_steps=2", "eval.prompts=2", "eval.batch_size=8",
        f"output_dir={tmp_path}", "name=dense", "hacking.warmup_rollouts=1", "model.lora.r=4",
        f"policy.process_reward={tmp_path / 'runs' / 'prm'}"]
    result = run_online(load_online_config("grpo", None, overrides))
    assert result.step == 2 and math.isfinite(result.last_metrics["loss"])
    rows = read_metrics(tmp_path / "dense" / "rollouts.jsonl")
    assert rows and all(0 < row["rollout/step_reward_mean"] < 1 for row in rows)
    with pytest.raises(ConfigError, match="process_reward"):
        load_online_config("rloo", None, overrides)


def test_truncated_solutions_are_scored_on_the_steps_that_fit_and_matched_threshold():
    from prefalign.eval.prm import evaluate_steps, matched_threshold

    records = [{"prompt": "a", "problem": 0, "labels": [1, 1, 0], "final_correct": False,
                "first_wrong": 2, "kind": "wrong_result"},
               {"prompt": "a", "problem": 0, "labels": [1, 1], "final_correct": True,
                "first_wrong": None, "kind": "reference"}]
    probabilities = [torch.tensor([0.9, 0.2]), torch.tensor([0.8, 0.7])]  # first one cut
    result = evaluate_steps(records, probabilities, "min")
    assert result["steps"] == 4 and result["step_accuracy"]["k"] == 3
    assert matched_threshold([0.3, 0.9, 0.1, 0.5], [1, 2, 3], 0.1) == 0.1
