"""``prefalign eval compare`` and ``eval policy`` end to end on tiny models, with judges
defined here (registered as judge kinds, so the command line builds them)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from prefalign.cli import main
from prefalign.eval.policies import LoadedPolicy, PolicySource
from prefalign.judges.base import JUDGE_KINDS, PairwiseVerdict, register_judge_kind
from prefalign.models.load import load_model

PROMPTS = "builtin:arithmetic?n=8"


class ParityVerifier:
    """A verifier-like judge: passes answers of even length, partial credit otherwise."""

    name = "verifier:parity"
    required_fields = ("answer",)

    def score(self, prompts, responses, records=None):
        assert records is not None and all("answer" in r for r in records)
        return [1.0 if len(r) % 2 == 0 else 0.25 for r in responses]


class CharacterJudge:
    """A pointwise judge: share of letters in the answer."""

    name = "letters"
    required_fields = ()

    def score(self, prompts, responses, records=None):
        return [sum(c.isalpha() for c in r) / max(len(r), 1) for r in responses]


class LongerJudge:
    """A pairwise judge preferring the longer answer; equal lengths tie."""

    name = "longer"

    def compare(self, prompts, responses_a, responses_b):
        return [PairwiseVerdict.from_orders(*(2 * [0.5 + 0.4 * math.copysign(1, len(a) - len(b))
                                                   if len(a) != len(b) else 0.5]))
                for a, b in zip(responses_a, responses_b)]


@pytest.fixture
def judges():
    kinds = {"parity": lambda arg, **_: ParityVerifier(),
             "letters": lambda arg, **_: CharacterJudge(),
             "longer": lambda arg, **_: LongerJudge()}
    for kind, factory in kinds.items():
        register_judge_kind(kind, factory)
    yield ["parity:x", "letters:x", "longer:x"]
    for kind in kinds:
        JUDGE_KINDS.pop(kind)


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory, tiny_model_dir):
    lm, tokenizer = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in lm.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    out = tmp_path_factory.mktemp("perturbed") / "model"
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["prefalign", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_two_tiny_policies(monkeypatch, capsys, tmp_path, tiny_model_dir, perturbed,
                                   judges):
    out = tmp_path / "cmp"
    args = ["eval", "compare", tiny_model_dir, perturbed, "--prompts", PROMPTS,
            "--baseline", tiny_model_dir, "--out", out, "--max-new-tokens", "6",
            "--kl-samples", "2", "--seed", "3"]
    for spec in judges:
        args += ["--judge", spec]
    code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    report = json.loads((out / "compare.json").read_text())
    rows = {row["policy"]: row for row in report["rows"]}
    base, other = rows[str(tiny_model_dir)], rows[str(perturbed)]
    for row in (base, other):
        assert set(row["rewards"]) == {"verifier:parity", "letters"}
        assert {"mean", "std", "ci_low", "ci_high"} <= set(row["rewards"]["letters"])
        assert {"kl_k1_seq", "kl_k3_seq", "kl_k1_token", "kl_k3_token", "length",
                "verbose_opener_rate", "reward_per_kl", "win_rate"} <= set(row)
        assert row["win_rate"]["judge"] == "longer"
    answers = {a["policy"]: a for a in report["answers"]}
    for label, row in rows.items():
        texts = answers[label]["texts"]
        passed = sum(len(t) % 2 == 0 for t in texts)
        assert row["pass"]["verifier:parity"]["rate"] == passed / 8
        p, z = passed / 8, 1.959963984540054
        centre = (p + z * z / 16) / (1 + z * z / 8)
        half = z * math.sqrt(p * (1 - p) / 8 + z * z / 256) / (1 + z * z / 8)
        assert row["pass"]["verifier:parity"]["ci_low"] == pytest.approx(max(0, centre - half))
        letters = [sum(c.isalpha() for c in t) / max(len(t), 1) for t in texts]
        assert row["rewards"]["letters"]["mean"] == pytest.approx(sum(letters) / 8)
    # the baseline is the KL reference: its KL is exactly zero, the perturbed one's is not
    assert base["kl_k1_seq"] == 0 and base["kl_k3_token"] == 0
    assert other["kl_k3_seq"] > 0
    assert base["win_rate"]["rate"] == 0.5 and base["reward_per_kl"] is None
    longer = [1.0 if len(a) > len(b) else 0.5 if len(a) == len(b) else 0.0 for a, b in
              zip(answers[str(perturbed)]["texts"], answers[str(tiny_model_dir)]["texts"])]
    expected = [0.9 if v == 1.0 else 0.1 if v == 0.0 else 0.5 for v in longer]
    assert other["win_rate"]["rate"] == pytest.approx(sum(expected) / 8)
    assert other["win_rate"]["tie_rate"] == pytest.approx(sum(v == 0.5 for v in longer) / 8)
    assert other["win_rate"]["position_flip_rate"] == 0
    # the pointwise judge gets its own win rate, from the two answers' scores per prompt
    def letters_share(text):
        return sum(c.isalpha() for c in text) / max(len(text), 1)
    by_score = [1.0 if letters_share(a) > letters_share(b) else
                0.5 if letters_share(a) == letters_share(b) else 0.0 for a, b in
                zip(answers[str(perturbed)]["texts"], answers[str(tiny_model_dir)]["texts"])]
    assert set(other["win_rates"]) == {"longer", "letters"}
    assert other["win_rates"]["letters"]["rate"] == pytest.approx(sum(by_score) / 8)
    assert "tie_rate" not in other["win_rates"]["letters"]
    gained = other["rewards"]["letters"]["mean"] - base["rewards"]["letters"]["mean"]
    assert other["reward_per_kl"] == pytest.approx(gained / other["kl_k1_seq"])
    markdown = (out / "compare.md").read_text()
    assert "win rate vs baseline (longer)" in markdown and "pass rate verifier:parity" in markdown
    assert "win rate vs baseline (letters)" in markdown
    html = (out / "compare.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    for name in ("frontier", "rewards", "lengths"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_same_seed_same_answers(tmp_path, tiny_model_dir, judges):
    from prefalign.eval.compare import Candidate, CompareSettings, compare_policies
    from prefalign.judges.base import build_judge
    from prefalign.tasks import load_source

    source = PolicySource("a", str(tiny_model_dir))
    records = load_source(PROMPTS, "prompt")
    settings = CompareSettings(max_new_tokens=5, temperature=1.0, kl_samples=0, seed=11)
    result = compare_policies([Candidate(source, "a"), Candidate(PolicySource("b", "tiny"), "b")],
                              records, [build_judge("letters:x")], settings=settings)
    first, second = result.answers
    assert first.texts == second.texts  # same weights, same seed: same samples
    assert result.rows[1]["win_rate"]["rate"] == 0.5


def test_long_prompts_keep_their_last_tokens(tmp_path, tiny_model_dir, judges):
    from prefalign.eval.compare import Candidate, CompareSettings, compare_policies
    from prefalign.judges.base import build_judge
    from prefalign.tasks import load_source

    source = PolicySource("a", str(tiny_model_dir))
    records = load_source(PROMPTS, "prompt")
    whole = LoadedPolicy(source, dtype="float32").encode(records)
    assert min(len(ids) for ids in whole) > 6
    settings = CompareSettings(max_new_tokens=3, kl_samples=1, max_prompt_length=6)
    result = compare_policies([Candidate(source, "a")], records, [build_judge("letters:x")],
                              settings=settings)
    assert result.answers[0].kl_prompt_ids == [ids[-6:] for ids in whole]


def test_token_logps_match_a_full_forward(tiny_model_dir):
    policy = LoadedPolicy(PolicySource("t", str(tiny_model_dir)), dtype="float32")
    prompts = [[5, 6, 7], [8, 9]]
    completions = [[10, 11], [12, 13, 14]]
    got = policy.token_logps(prompts, completions)
    lm = policy.lm.double()
    for prompt, completion, values in zip(prompts, completions, got):
        ids = torch.tensor([prompt + completion])
        logits = lm(ids).logits[0].double().log_softmax(-1)
        expected = [logits[len(prompt) + t - 1, token].item()
                    for t, token in enumerate(completion)]
        assert values == pytest.approx(expected, abs=1e-4)


def test_eval_policy_with_best_of(monkeypatch, capsys, tmp_path, tiny_model_dir, perturbed,
                                  judges):
    out = tmp_path / "pe"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "eval", "policy", "--model", perturbed, "--reference",
        tiny_model_dir, "--prompts", PROMPTS, "--judge", "letters:x", "--judge", "parity:x",
        "--best-of", "3", "--rerank", "letters:x", "--max-new-tokens", "5", "--out", out)
    assert code == 0, err
    for key in ("reward=", "reference_reward=", "win_rate=", "kl=", "length=", "pass_rate=",
                "best_of_reward="):
        assert key in stdout
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["policy"] for r in rows] == ["reference", "policy", "policy best-of-3"]
    assert rows[2]["kl_bound"] == pytest.approx(math.log(3) - 2 / 3)
    assert "kl_k1_seq" not in rows[2] and rows[1]["kl_k1_seq"] != 0


def test_eval_compare_adds_the_baseline_as_best_of_n(monkeypatch, capsys, tmp_path,
                                                     tiny_model_dir, perturbed, judges):
    out = tmp_path / "cmp"
    code, _, err = run_cli(
        monkeypatch, capsys, "eval", "compare", str(tiny_model_dir), perturbed,
        "--prompts", PROMPTS, "--judge", "letters:x", "--best-of", "3", "--rerank",
        "letters:x", "--temperature", "1.0", "--max-new-tokens", "5", "--out", out)
    assert code == 0, err
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["best_of"] for r in rows] == [1, 1, 3]
    assert rows[2]["policy"] == f"{rows[0]['policy']} best-of-3"
    assert rows[2]["model"] == rows[0]["model"]  # the baseline's samples, reranked
    assert rows[2]["kl_bound"] == pytest.approx(math.log(3) - 2 / 3)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "compare", str(tiny_model_dir),
                           "--prompts", PROMPTS, "--judge", "letters:x", "--best-of", "3",
                           "--out", out)
    _one_line_error(code, err, "--best-of needs --rerank")


def _one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_unknown_judge(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "eval", "compare", "tiny", "--prompts", PROMPTS,
                           "--judge", "oracle:x", "--out", tmp_path)
    _one_line_error(code, err, "unknown judge 'oracle:x'", "verifier")


def test_model_path_that_does_not_exist(monkeypatch, capsys, tmp_path, judges):
    missing = tmp_path / "no" / "such-model"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "policy", "--model", missing,
                           "--prompts", PROMPTS, "--judge", "letters:x")
    _one_line_error(code, err, "does not exist", str(missing))


def test_prompts_without_verifier_fields(monkeypatch, capsys, tmp_path, judges):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is 2 + 2?"}\n')
    code, _, err = run_cli(monkeypatch, capsys, "eval", "compare", "tiny", "--prompts", prompts,
                           "--judge", "parity:x", "--out", tmp_path / "o")
    _one_line_error(code, err, "prompts.jsonl", "'answer'", "verifier:parity")


def test_online_run_detection(tmp_path):
    from prefalign.stages.online.evaluate_run import is_online_run

    (tmp_path / "config.yaml").write_text("algorithm: grpo\nmodel:\n  name: tiny\n")
    assert is_online_run(tmp_path)
    (tmp_path / "config.yaml").write_text("model:\n  name: tiny\ndata:\n  train: x\n")
    assert not is_online_run(tmp_path)
