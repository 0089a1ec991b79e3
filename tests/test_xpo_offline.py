"""Offline XPO: reference samples in preference records, their log-probs in the training pass,
the loss against a float64 computation, a tiny-model run, and the missing-field error."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest
import torch

from prefalign.cli import main
from prefalign.config import LossConfig, PreferenceConfig
from prefalign.data.collate import collate_preference
from prefalign.data.collate_shared import SAMPLE, collate_preference_shared
from prefalign.data.schema import validate_records
from prefalign.data.tokenize import encode_preference
from prefalign.engine.metrics import read_metrics
from prefalign.errors import DataError
from prefalign.models.tiny import tiny_model, tiny_tokenizer
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.preference import run_preference
from prefalign.stages.preference_algorithm import PreferenceAlgorithm, Reference
from prefalign.tasks import arithmetic

VOCAB = 61
BETA, ALPHA = 0.2, 0.3
NEEDS = {"reference_sample": "loss xpo needs it"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))


def _examples(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def draw(low: int, high: int) -> list[int]:
        return [rng.randrange(1, VOCAB) for _ in range(rng.randint(low, high))]

    return [{"prompt_ids": draw(2, 9), "chosen_ids": draw(1, 7), "rejected_ids": draw(1, 7),
             "sample_ids": draw(1, 8)} for _ in range(count)]


@torch.no_grad()
def _independent_sum(lm, prompt: list[int], completion: list[int]) -> float:
    """log p(completion | prompt): one unpadded sequence, log-softmax in float64."""
    ids = torch.tensor([prompt + completion])
    logits = lm(input_ids=ids, use_cache=False).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
    return float(logp[len(prompt) - 1:].sum())


# ------------------------------------------------------------------- records and batches

def test_reference_sample_is_kept_checked_and_required_with_file_and_line():
    rows = [(1, {"prompt": "q", "chosen": "a", "rejected": "b", "reference_sample": "c"}),
            (3, {"prompt": "q", "chosen": "a", "rejected": "b"})]
    records = validate_records(rows, "preference", file="pairs.jsonl")
    assert records[0]["reference_sample"] == "c" and "reference_sample" not in records[1]
    with pytest.raises(DataError) as info:
        validate_records(rows, "preference", file="pairs.jsonl", require=NEEDS)
    message = str(info.value)
    assert message.startswith("pairs.jsonl:3: field 'reference_sample': missing; "
                              "loss xpo needs it") and "\n" not in message
    bad = [(2, {"prompt": "q", "chosen": "a", "rejected": "b",
                "reference_sample": [{"role": "user", "content": "x"}]})]
    with pytest.raises(DataError, match=r"pairs.jsonl:2: field 'reference_sample\[0\].role'"):
        validate_records(bad, "preference", file="pairs.jsonl")


def test_encoding_tokenises_the_sample_only_when_asked():
    tok = tiny_tokenizer()
    record = {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6",
              "reference_sample": "It is 5"}
    plain = encode_preference(record, tok)
    assert "sample_ids" not in plain
    with_sample = encode_preference(record, tok, reference_sample=True)
    expected = tok("It is 5<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert with_sample["sample_ids"] == expected
    assert {k: with_sample[k] for k in plain} == plain
    with pytest.raises(DataError, match="reference_sample"):
        encode_preference({"prompt": "q", "chosen": "a", "rejected": "b"}, tok,
                          reference_sample=True)


def test_two_row_layout_puts_samples_in_a_third_block():
    examples = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4],
                 "sample_ids": [5, 6]},
                {"prompt_ids": [7], "chosen_ids": [8], "rejected_ids": [9], "sample_ids": [10]}]
    batch = collate_preference(examples, pad_id=0, samples=True)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0], [7, 8, 0, 0], [1, 2, 4, 0],
                                           [7, 9, 0, 0], [1, 2, 5, 6], [7, 10, 0, 0]]
    assert batch["completion_mask"][4:].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    assert batch["sample_lengths"].tolist() == [2, 1]
    assert "sample_lengths" not in collate_preference(examples, pad_id=0)


def test_shared_row_keeps_the_sample_apart_from_chosen_and_rejected():
    example = {"prompt_ids": [11, 12], "chosen_ids": [21], "rejected_ids": [31, 32],
               "sample_ids": [41, 42]}
    batch = collate_preference_shared([example], pad_id=0, samples=True)
    assert batch["input_ids"][0].tolist() == [11, 12, 21, 31, 32, 41, 42]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 2, 3, 2, 3]
    assert batch["predictor_positions"][0, 2:].tolist() == [1, 1, 3, 1, 5]
    assert batch["segment_ids"][0, 5:].tolist() == [SAMPLE, SAMPLE]
    mask = batch["attention_mask"][0, 0].int().tolist()
    assert mask[5] == [1, 1, 0, 0, 0, 1, 0] and mask[6] == [1, 1, 0, 0, 0, 1, 1]
    assert mask[4] == [1, 1, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("sharing", [False, True])
def test_xpo_step_equals_a_float64_computation_from_independent_sequences(sharing):
    """L = mean_b[−log σ(β·h_b) + α·log π(ỹ_b|x_b)] (Xie et al. 2024), every log-prob a
    separate unpadded float64 pass; the reference is the same model with other weights."""
    torch.manual_seed(0)
    lm, ref_lm = tiny_model(VOCAB, seed=3), tiny_model(VOCAB, seed=4)
    for model in (lm, ref_lm):
        model.config._attn_implementation = "sdpa"
    examples = _examples(5, seed=2)
    loss = LossConfig(name="xpo", beta=BETA, alpha=ALPHA)
    algorithm = PreferenceAlgorithm(examples, [], loss,
                                    Reference("separate", model=CompletionLogprobModel(ref_lm)),
                                    pad_id=0, batch_size=5, seed=0, prefix_sharing=sharing)
    with torch.no_grad():
        out = algorithm.step(CompletionLogprobModel(lm), algorithm._collate(
            examples, list(range(5)), None))
        terms = []
        for e in examples:
            margin = ((_independent_sum(lm, e["prompt_ids"], e["chosen_ids"])
                       - _independent_sum(ref_lm, e["prompt_ids"], e["chosen_ids"]))
                      - (_independent_sum(lm, e["prompt_ids"], e["rejected_ids"])
                         - _independent_sum(ref_lm, e["prompt_ids"], e["rejected_ids"])))
            sample = _independent_sum(lm, e["prompt_ids"], e["sample_ids"])
            terms.append(math.log1p(math.exp(-BETA * margin)) + ALPHA * sample)
    assert float(out.loss) == pytest.approx(math.fsum(terms) / len(terms), rel=1e-5)
    samples = [_independent_sum(lm, e["prompt_ids"], e["sample_ids"]) for e in examples]
    assert out.metrics["xpo/ref_sample_logp"] == pytest.approx(sum(samples) / 5, rel=1e-5)
    assert out.tokens == sum(3 * len(e["prompt_ids"]) + len(e["chosen_ids"])
                             + len(e["rejected_ids"]) + len(e["sample_ids"]) for e in examples)


def test_average_log_prob_divides_the_sample_by_its_length_too():
    lm = tiny_model(VOCAB, seed=3)
    examples = _examples(3, seed=5)
    loss = LossConfig(name="xpo", beta=BETA, alpha=ALPHA, average_log_prob=True)
    algorithm = PreferenceAlgorithm(examples, [], loss, Reference("adapter_disabled"),
                                    pad_id=0, batch_size=3, seed=0)
    with torch.no_grad():
        out = algorithm.step(CompletionLogprobModel(lm), algorithm._collate(
            examples, [0, 1, 2], None))
        means = [_independent_sum(lm, e["prompt_ids"], e["sample_ids"]) / len(e["sample_ids"])
                 for e in examples]
    # policy = reference at step 0: the DPO part is log 2 exactly
    assert float(out.loss) == pytest.approx(math.log(2) + ALPHA * sum(means) / 3, rel=1e-5)


# ------------------------------------------------------------------------- whole runs

def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prefalign", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _cfg(tmp_path, model_dir, data_file, run, **loss) -> PreferenceConfig:
    return PreferenceConfig.model_validate({
        "name": run, "output_dir": str(tmp_path / "runs"),
        "model": {"name": str(model_dir), "lora": {"r": 4, "alpha": 8}},
        "data": {"train": str(data_file), "eval_fraction": 0.25, "max_length": 48,
                 "max_prompt_length": 32},
        "train": {"lr": 1e-2, "max_steps": 3, "batch_size": 4, "save_every": 0, "seed": 0,
                  "threads": 1},
        "loss": loss})


def test_reference_samples_command_then_an_xpo_run(tmp_path, tiny_model_dir, preference_file,
                                                   monkeypatch, capsys):
    out_file = tmp_path / "with_samples.jsonl"
    code, out, _ = _run_cli(monkeypatch, capsys, "data", "reference-samples",
                            "--model", str(tiny_model_dir), "--pairs", str(preference_file),
                            "--out", str(out_file), "--max-new-tokens", "6", "--seed", "3")
    assert code == 0, out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    source = [json.loads(line) for line in preference_file.read_text().splitlines()]
    assert len(rows) > 0.8 * len(source) and f"{len(rows)} of {len(source)}" in out
    assert all(isinstance(r["reference_sample"], str) and r["reference_sample"] for r in rows)
    assert {r["prompt"] for r in rows} <= {r["prompt"] for r in source}

    cfg = _cfg(tmp_path, tiny_model_dir, out_file, "xpo", name="xpo", alpha=0.1)
    result = run_preference(cfg)
    steps = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "loss" in r]
    assert len(steps) == 3 and all(math.isfinite(r["loss"]) for r in steps)
    assert all(math.isfinite(r["xpo/ref_sample_logp"]) for r in steps)
    assert math.isfinite(result.eval_metrics["xpo/ref_sample_logp"])


def test_xpo_run_without_reference_samples_is_one_clear_line(tmp_path, tiny_model_dir,
                                                             monkeypatch, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = arithmetic.preference_records(8, seed=1)
    rows[0]["reference_sample"] = "12"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = _run_cli(monkeypatch, capsys, "dpo", f"model.name={tiny_model_dir}",
                            f"data.train={pairs}", f"output_dir={tmp_path / 'runs'}",
                            "loss.name=xpo", "train.max_steps=1")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {pairs}:2: field 'reference_sample': missing; loss xpo")
    assert "prefalign data reference-samples" in lines[0]
    # the same file trains with a loss that does not need samples
    run_preference(_cfg(tmp_path, tiny_model_dir, pairs, "dpo", name="dpo"))
