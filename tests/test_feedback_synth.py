"""Judge-filtered synthetic SFT data (``prefalign data synth-sft``)."""

from __future__ import annotations

import json
import sys

import pytest

from prefalign.cli import main
from prefalign.judges.base import build_judge
from prefalign.stages.sampling import PolicySampler, SamplerSettings, chunk_seed
from prefalign.stages.synth_sft import synth_sft
from prefalign.tasks import get_task, load_source

SOURCE = "builtin:arithmetic?n=6"


class LengthJudge:
    """Pointwise: the score of a response is its length in characters."""

    name = "test:length"
    required_fields = ()

    def score(self, prompts, responses, records=None):
        return [float(len(r)) for r in responses]


def answers_sampler(records, seed):
    """Right, wrong, verbose, repeated and empty answers for each arithmetic record."""
    return [[str(r["answer"]), str(r["answer"] + 1),
             f"{r['answer'] - 10} is close to {r['answer']}", str(r["answer"]), ""]
            for r in records]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _accepted(records, groups):
    """Independent recomputation: distinct non-empty responses the task verifier passes."""
    verifier = get_task("arithmetic").verifier()
    kept = []
    for record, group in zip(records, groups):
        seen = set()
        for text in group:
            if text and text not in seen:
                seen.add(text)
                if verifier.score(text, record) >= 1.0:
                    kept.append((record["prompt"], text))
    return kept


def test_keeps_exactly_the_verifier_accepted_completions(tmp_path):
    records = load_source(SOURCE, "prompt")
    out = tmp_path / "sft.jsonl"
    summary = synth_sft(records, answers_sampler, build_judge("verifier:arithmetic"), out,
                        threshold=1.0, settings={}, chunk_size=4)
    rows = read(out)
    expected = _accepted(records, answers_sampler(records, 0))
    assert [(r["prompt"], r["completion"]) for r in rows] == expected
    assert len(expected) == 6  # the bare answer only: "+1" is wrong, verbose fails the format
    assert all(r["metadata"]["score"] == 1.0 for r in rows)
    assert (summary.kept, summary.scored, summary.prompts_kept) == (6, 6 * 3, 6)


def test_pointwise_threshold_keeps_scores_at_or_above(tmp_path):
    records = [{"prompt": "p"}]
    sampler = lambda recs, seed: [["abc", "abcdef", "ab", "abcd"]]  # noqa: E731
    synth_sft(records, sampler, LengthJudge(), tmp_path / "sft.jsonl", threshold=4.0,
              settings={})
    assert [r["completion"] for r in read(tmp_path / "sft.jsonl")] == ["abcdef", "abcd"]


def test_tiny_model_with_verifier_matches_recomputation(tmp_path, tiny_model_dir):
    records = load_source(SOURCE, "prompt")
    sampler = PolicySampler(str(tiny_model_dir), SamplerSettings(samples=3, max_new_tokens=4,
                                                                 batch_size=4))
    groups = [g for start in range(0, 6, 4) for g in  # what the stage draws, chunk by chunk
              sampler(records[start:start + 4], chunk_seed(0, start // 4))]

    out = tmp_path / "sft.jsonl"
    summary = synth_sft(records, sampler, build_judge("verifier:arithmetic"), out,
                        threshold=1.0, settings={}, chunk_size=4)
    assert [(r["prompt"], r["completion"]) for r in read(out)] == _accepted(records, groups)
    assert summary.scored == sum(len({t for t in g if t}) for g in groups)


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["prefalign", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_synth_sft_command(monkeypatch, capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "sft.jsonl"
    code, stdout, _ = run_cli(monkeypatch, capsys, "data", "synth-sft", "--model",
                              tiny_model_dir, "--prompts", SOURCE, "--verifier", "arithmetic",
                              "--samples", "2", "--max-new-tokens", "4", "--out", out)
    assert code == 0
    assert "kept" in stdout and "/6 prompts" in stdout
    assert out.exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--verifier", "arithmetic", "--judge", "verifier:arithmetic"], "exactly one"),
    (["--judge", "rm:/nonexistent"], "--threshold"),
])
def test_bad_options_are_one_line(monkeypatch, capsys, tmp_path, extra, fragment):
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth-sft", "--model", "tiny",
                           "--prompts", SOURCE, "--out", tmp_path / "o.jsonl", *extra)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_prompts_without_verifier_fields_are_one_line(monkeypatch, capsys, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 1 + 1?"}) + "\n")
    code, _, err = run_cli(monkeypatch, capsys, "data", "synth-sft", "--model", "tiny",
                           "--prompts", prompts, "--verifier", "arithmetic", "--out",
                           tmp_path / "o.jsonl")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{prompts}:1" in err and "'answer'" in err
