"""Judges: verdicts in both orders, caches and counters, reward-model, verifier and local
LM judges, agreement figures, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from tests.conftest import write_jsonl

from prefalign.cli import main
from prefalign.errors import ConfigError, DataError, ModelError
from prefalign.judges import PairwiseVerdict, build_judge
from prefalign.judges.agreement import judge_agreement
from prefalign.tasks import arithmetic


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prefalign", *args])
    capsys.readouterr()  # drop what fixtures printed (progress bars of saved models)
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_verdict_combines_both_orders_and_calls_disagreement_a_tie():
    consistent = PairwiseVerdict.from_orders(0.9, 0.7)
    assert consistent.p_first == pytest.approx(0.8)
    assert not consistent.tie and not consistent.position_flip
    flipped = PairwiseVerdict.from_orders(0.9, 0.2)
    assert flipped.tie and flipped.position_flip and flipped.p_first == pytest.approx(0.55)
    assert PairwiseVerdict.from_orders(0.5, 0.5).tie


def test_verifier_judge_scores_pairs_from_their_metadata():
    pairs = arithmetic.preference_records(20, seed=3)
    judge = build_judge("verifier:arithmetic")
    records = [{k: v for k, v in p.items() if k != "answer"} for p in pairs]  # metadata only
    scores = judge.score([p["prompt"] for p in pairs], [p["chosen"] for p in pairs], records)
    assert scores == [1.0] * len(pairs)
    result = judge_agreement(judge, pairs)
    assert result["accuracy"]["value"] == 1.0 and result["position_bias"] is None


def test_unknown_judge_kind_lists_the_kinds(monkeypatch, capsys, tmp_path):
    with pytest.raises(ConfigError, match="rm, verifier"):
        build_judge("oracle:gpt")
    data = write_jsonl(tmp_path / "p.jsonl", arithmetic.preference_records(4, seed=1))
    code, _, err = run_cli(monkeypatch, capsys, "eval", "judge", "--judge", "oracle:gpt",
                           "--data", str(data), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "unknown judge 'oracle:gpt'", "hf-rm, http, lm, rm")


def test_verifier_judge_on_prompts_without_its_fields(monkeypatch, capsys, tmp_path):
    rows = [{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}] * 3
    with pytest.raises(DataError, match="field 'answer'"):
        build_judge("verifier:arithmetic").score(["q"], ["4"], [{"prompt": "q"}])
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "judge", "--judge",
                           "verifier:arithmetic", "--data", str(data),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "field 'answer'", "verifier:arithmetic")


def _seq_classifier(path, tokenizer_dir, num_labels=1):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


def test_hf_reward_model_scores_the_single_logit_and_caches_on_disk(tmp_path, tiny_model_dir):
    model, tokenizer = _seq_classifier(tmp_path / "rm", tiny_model_dir)
    prompts, responses = ["Hi there", "What is 3 + 4?"], ["Hello!", "7"]
    judge = build_judge(f"hf-rm:{tmp_path / 'rm'}", cache_dir=tmp_path / "cache")
    scores = judge.score(prompts, responses)
    for prompt, response, score in zip(prompts, responses, scores):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": response}],
                                             tokenize=False)
        ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            expected = model(input_ids=ids).logits[0, 0].double()
        assert score == pytest.approx(float(expected), abs=1e-5)
    assert judge.stats.requests == 2
    again = build_judge(f"hf-rm:{tmp_path / 'rm'}", cache_dir=tmp_path / "cache")
    assert again.score(prompts, responses) == scores
    assert again.stats.requests == 0 and again.stats.hits == 2


def test_a_model_that_is_not_a_reward_model(monkeypatch, capsys, tmp_path, tiny_model_dir):
    _seq_classifier(tmp_path / "classifier", tiny_model_dir, num_labels=3)
    with pytest.raises(ModelError, match="3 outputs"):
        build_judge(f"hf-rm:{tmp_path / 'classifier'}")
    with pytest.raises(ModelError, match="not a reward model"):
        build_judge(f"rm:{tiny_model_dir}")
    data = write_jsonl(tmp_path / "p.jsonl", arithmetic.preference_records(4, seed=1))
    code, _, err = run_cli(monkeypatch, capsys, "eval", "judge", "--judge",
                           f"hf-rm:{tiny_model_dir}", "--data", str(data),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "is not a reward model", "LlamaForCausalLM")


def _answer_prob(model, tokenizer, question: str) -> float:
    """P("A") over {"A", "B"} at the opened assistant turn, unbatched, in float64."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                         tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    log_p = torch.log_softmax(logits, -1)

    def letter(c):
        spellings = {tuple(tokenizer.encode(s, add_special_tokens=False)) for s in (c, " " + c)}
        return torch.logsumexp(log_p[[s[0] for s in spellings if len(s) == 1]], 0)

    la, lb = letter("A"), letter("B")
    return float(torch.exp(la) / (torch.exp(la) + torch.exp(lb)))


def test_local_lm_judge_reads_answer_logprobs_in_both_orders(tmp_path, tiny_model_dir):
    from prefalign.judges.rubric import read_rubric, render
    from prefalign.models import load_model

    judge = build_judge(f"lm:{tiny_model_dir}", cache_dir=tmp_path / "cache", batch_size=2)
    prompts = ["What is 2 + 2?", "Say hi", "Name a colour, please"]
    first, second = ["4", "hi", "blue"], ["5", "go away now", "no"]
    verdicts = judge.compare(prompts, first, second)
    model, tokenizer = load_model(str(tiny_model_dir))
    rubric = read_rubric()
    for p, a, b, verdict in zip(prompts, first, second, verdicts):
        q1 = _answer_prob(model, tokenizer, render(rubric, p, a, b))
        q2 = _answer_prob(model, tokenizer, render(rubric, p, b, a))
        assert verdict.first_order == pytest.approx(q1, abs=1e-5)
        assert verdict.swapped_order == pytest.approx(1 - q2, abs=1e-5)
        assert verdict.p_first == pytest.approx((q1 + 1 - q2) / 2, abs=1e-5)
        assert len(verdict.raw) == 2
    assert judge.stats.requests == 6
    swapped = judge.compare(prompts, second, first)  # the same six questions
    assert judge.stats.requests == 6 and judge.stats.hits == 6
    for v, w in zip(verdicts, swapped):
        assert w.p_first == pytest.approx(1 - v.p_first)


def test_a_rubric_without_placeholders_is_refused(tmp_path, tiny_model_dir):
    bad = tmp_path / "rubric.md"
    bad.write_text("Which is better, {response_a} or {response_b}?")
    with pytest.raises(ConfigError, match=r"missing \{prompt\}"):
        build_judge(f"lm:{tiny_model_dir}", rubric=bad, cache=False)


def test_reward_model_judge_and_eval_judge_outputs(monkeypatch, capsys, tmp_path,
                                                   tiny_model_dir, preference_file):
    from prefalign.config import RewardConfig, load_config
    from prefalign.rewards import RewardModel
    from prefalign.stages.reward import run_reward

    cfg = load_config(RewardConfig, None, [
        f"model.name={tiny_model_dir}", f"data.train={preference_file}", "name=rm",
        f"output_dir={tmp_path / 'runs'}", "train.max_steps=1", "train.batch_size=8",
        "train.save_every=0", "tuning=frozen"])
    run_reward(cfg)
    final = tmp_path / "runs" / "rm" / "final"
    pairs = arithmetic.preference_records(12, seed=5)
    model = RewardModel.load(final)
    prompts = [p["prompt"] for p in pairs]
    s_c = model.score(prompts, [p["chosen"] for p in pairs]).double()
    s_r = model.score(prompts, [p["rejected"] for p in pairs]).double()
    wins, ties = int((s_c > s_r).sum()), int((s_c == s_r).sum())
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(monkeypatch, capsys, "eval", "judge", "--judge", f"rm:{final}",
                             "--data", str(data), "--n", "12", "--out", str(tmp_path / "o"))
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "judge_eval.json").read_text())
    assert result["pairs"] == 12
    assert result["accuracy"]["value"] == pytest.approx((wins + 0.5 * ties) / 12)
    assert result["stats"]["requests"] == 24
    # every scored sequence holds at least its prompt's and its response's own tokens
    tokenizer = model.backbones[0].tokenizer
    least = sum(len(tokenizer.encode(str(p["prompt"]) if not isinstance(p["prompt"], list)
                                     else p["prompt"][-1]["content"], add_special_tokens=False))
                + len(tokenizer.encode(p[side] if isinstance(p[side], str)
                                       else p[side][-1]["content"], add_special_tokens=False))
                for p in pairs for side in ("chosen", "rejected"))
    assert least <= result["stats"]["prompt_tokens"] <= least + 24 * 64
    assert "| accuracy (ties ½) |" in (tmp_path / "o" / "judge_eval.md").read_text()


def test_the_cache_keeps_chunks_judged_before_an_interruption(tmp_path):
    from prefalign.judges.cache import CHUNK, JudgeCache, JudgeStats

    items = [(f"prompt {i}", "a", "b") for i in range(CHUNK + 5)]
    calls = []

    def compute(chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [[0.25, "x"]] * len(chunk)

    with pytest.raises(KeyboardInterrupt):
        JudgeCache("judge", JudgeStats(), tmp_path).get_or_compute(items, compute)
    stats = JudgeStats()
    resumed = JudgeCache("judge", stats, tmp_path)
    assert resumed.get_or_compute(items, lambda chunk: [[0.75, "y"]] * len(chunk)) == \
        [[0.25, "x"]] * CHUNK + [[0.75, "y"]] * 5
    assert stats.hits == CHUNK and stats.misses == 5
    assert JudgeCache("other judge", JudgeStats(), tmp_path).get_or_compute(
        items[:1], lambda chunk: [[0.5, "z"]]) == [[0.5, "z"]]


def test_pairwise_agreement_figures_from_known_verdicts():
    from prefalign.judges.cache import JudgeStats

    orders = [(0.9, 0.8), (0.2, 0.1), (0.9, 0.3), (0.6, 0.45), (0.7, 0.6)]

    class FixedJudge:
        name, stats = "fixed", JudgeStats()

        def compare(self, prompts, a, b):
            return [PairwiseVerdict.from_orders(f, s) for f, s in orders]

    pairs = [{"prompt": "p", "chosen": "c", "rejected": "r"}] * 5
    result = judge_agreement(FixedJudge(), pairs)
    # wins: pairs 1 and 5; loss: pair 2; ties (orders disagree): pairs 3 and 4
    assert result["accuracy"]["value"] == pytest.approx((2 + 0.5 * 2) / 5)
    assert result["decisive_accuracy"]["value"] == pytest.approx(2 / 3)
    assert result["position_bias"]["value"] == result["tie_rate"]["value"] == 0.4
    assert result["preference_accuracy"]["value"] == pytest.approx(4 / 5)  # 0.6, 0.525 > ½
    first_shown = [(f + 1 - s) / 2 for f, s in orders]
    assert result["first_position_rate"] == pytest.approx(sum(first_shown) / 5)
