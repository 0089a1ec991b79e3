"""AI-feedback labelling (``prefalign data label``): pairs follow the judge, the confidence
filter and random control, resume after a kill, bad input."""

from __future__ import annotations

import json
import math
import sys

import pytest

from prefalign.cli import main
from prefalign.errors import PrefalignError
from prefalign.judges.base import JUDGE_KINDS, PairwiseVerdict
from prefalign.stages.feedback import (
    LabelOutput,
    constitution_rubric,
    journal_path,
    label_prompts,
    round_robin,
)
from prefalign.stages.sampling import PolicySampler, SamplerSettings

SCALE = 20.0


class LongerJudge:
    """Prefers the longer response: P(A better) = ½ + ½·tanh((|A| − |B|)/20), both orders."""

    name = "test:longer"

    def __init__(self):
        self.prompts = set()

    def compare(self, prompts, responses_a, responses_b):
        self.prompts.update(prompts)
        verdicts = []
        for a, b in zip(responses_a, responses_b):
            p = 0.5 + 0.5 * math.tanh((len(a) - len(b)) / SCALE)
            verdicts.append(PairwiseVerdict.from_orders(p, p))
        return verdicts


class FirstShownJudge:
    """Always prefers whichever response is shown first: pure position bias."""

    name = "test:first-shown"

    def compare(self, prompts, responses_a, responses_b):
        return [PairwiseVerdict.from_orders(1.0, 0.0) for _ in prompts]


def fake_sampler(table):
    """A sampler returning ``table[prompt]`` for each record (seed ignored)."""
    return lambda records, seed: [list(table[r["prompt"]]) for r in records]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_round_robin_ranks_by_mean_win_probability():
    # s0 = (0.9 + 0.2)/2 = 0.55, s1 = (0.1 + 0.6)/2 = 0.35, s2 = (0.8 + 0.4)/2 = 0.6
    assert round_robin(3, {(0, 1): 0.9, (0, 2): 0.2, (1, 2): 0.6}) == (2, 1)
    assert round_robin(2, {(0, 1): 0.5}) == (0, 1)


def test_pairs_follow_the_judge_best_and_worst(tmp_path):
    table = {"p0": ["medium text", "", "a much longer response here", "short", "short"],
             "p1": ["bb", "a"], "p2": ["same", "same", ""]}
    records = [{"prompt": p} for p in table]
    summary = label_prompts(records, fake_sampler(table), LongerJudge(),
                            LabelOutput(tmp_path / "pairs.jsonl"), settings={}, chunk_size=2)
    rows = read(tmp_path / "pairs.jsonl")
    assert (summary.labelled, summary.skipped) == (2, 1)
    assert [r["prompt"] for r in rows] == ["p0", "p1"]
    for row in rows:
        texts = [t for t in table[row["prompt"]] if t]
        assert row["chosen"] == max(texts, key=len) and row["rejected"] == min(texts, key=len)
        expected = math.tanh((len(row["chosen"]) - len(row["rejected"])) / SCALE)
        assert row["metadata"]["confidence"] == pytest.approx(expected, abs=1e-12)
        assert row["metadata"]["p_chosen"] == pytest.approx(0.5 + 0.5 * expected, abs=1e-12)
        assert row["metadata"]["judge"] == "test:longer"
        assert row["metadata"]["position_consistent"] is True
    assert rows[0]["metadata"]["chosen_sample"] == 2
    assert rows[0]["metadata"]["rejected_sample"] == 3
    skipped = [json.loads(line) for line in journal_path(tmp_path / "pairs.jsonl")
               .read_text().splitlines()[1:]]
    assert skipped[2] == {"prompt_index": 2, "pair": None,
                          "skipped": "fewer than two distinct non-empty responses"}


class BiasedJudge:
    """Prefers the first-shown response, and the response "good" a little more: P(A better)
    is 0.8 with "good" as A shown first, 0.4 with it shown second."""

    name = "test:biased"

    def compare(self, prompts, responses_a, responses_b):
        return [PairwiseVerdict.from_orders(0.8, 0.4) if a == "good" else
                PairwiseVerdict.from_orders(0.6, 0.2) for a in responses_a]


@pytest.mark.parametrize("judge, chosen, confidence", [
    (FirstShownJudge(), "one", 0.0),           # (1 + 0)/2 = ½: no preference left
    (BiasedJudge(), "good", 0.2),              # (0.8 + 0.4)/2 = 0.6 → |0.6 − ½|·2
])
def test_position_bias_averages_out(tmp_path, judge, chosen, confidence):
    table = {"q": ["one", "good"] if chosen == "one" else ["good", "bad"]}
    label_prompts([{"prompt": "q"}], fake_sampler(table), judge,
                  LabelOutput(tmp_path / "pairs.jsonl"), settings={})
    (row,) = read(tmp_path / "pairs.jsonl")
    assert row["chosen"] == chosen
    assert row["metadata"]["tie"] is True
    assert row["metadata"]["confidence"] == pytest.approx(confidence, abs=1e-12)
    assert row["metadata"]["position_consistent"] is False


def test_confidence_filter_and_random_control(tmp_path):
    table = {f"p{i}": ["x" * (i + 1), "y" * (2 * i + 3)] for i in range(12)}
    records = [{"prompt": p} for p in table]
    outputs = [LabelOutput(tmp_path / f"{name}.jsonl", 0.4, tmp_path / f"{name}-control.jsonl",
                           seed) for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    for output in outputs:
        label_prompts(records, fake_sampler(table), LongerJudge(), output, settings={})
    everything = [json.loads(line)["pair"] for line in
                  journal_path(outputs[0].out).read_text().splitlines()[1:]]
    kept, control = read(outputs[0].out), read(outputs[0].random_control)
    expected_kept = [r for r in everything
                     if math.tanh((len(r["chosen"]) - len(r["rejected"])) / SCALE) >= 0.4]
    assert kept == expected_kept and 0 < len(kept) < len(everything)
    assert len(control) == len(kept)
    canonical = {json.dumps(r, sort_keys=True) for r in everything}
    assert all(json.dumps(r, sort_keys=True) in canonical for r in control)
    assert control == read(outputs[1].random_control)
    assert control != read(outputs[2].random_control)


def _tiny_sampler(tiny_model_dir):
    return PolicySampler(str(tiny_model_dir), SamplerSettings(samples=3, max_new_tokens=6,
                                                              batch_size=3))


class Killed(Exception):
    pass


def _stop_after(prompts):
    def check(done, total):
        if done >= prompts:
            raise Killed
    return check


def test_resume_after_kill_gives_the_uninterrupted_file(tmp_path, tiny_model_dir):
    sampler = _tiny_sampler(tiny_model_dir)
    records = [{"prompt": f"Say something about the number {i}."} for i in range(7)]
    whole = LabelOutput(tmp_path / "whole" / "pairs.jsonl", 0.1, tmp_path / "whole" / "c.jsonl")
    label_prompts(records, sampler, LongerJudge(), whole, settings={"m": 1}, chunk_size=3)
    cut = LabelOutput(tmp_path / "cut" / "pairs.jsonl", 0.1, tmp_path / "cut" / "c.jsonl")
    first = label_prompts(records, sampler, LongerJudge(), cut, settings={"m": 1},
                          chunk_size=3, limit=4)
    assert first.prompts == 4 and first.labelled + first.skipped == 4
    with pytest.raises(Killed):
        label_prompts(records, sampler, LongerJudge(), cut, settings={"m": 1}, chunk_size=3,
                      on_progress=_stop_after(6))
    journal = journal_path(cut.out)
    lines = journal.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 6
    journal.write_text("".join(lines[:-1]) + lines[-1][:25])  # killed while writing prompt 5
    judge = LongerJudge()
    summary = label_prompts(records, sampler, judge, cut, settings={"m": 1}, chunk_size=3)
    assert summary.resumed == 5 and judge.prompts == {records[5]["prompt"], records[6]["prompt"]}
    assert cut.out.read_bytes() == whole.out.read_bytes()
    assert cut.random_control.read_bytes() == whole.random_control.read_bytes()
    assert journal.read_text() == journal_path(whole.out).read_text()
    with pytest.raises(PrefalignError, match="other settings"):
        label_prompts(records, sampler, LongerJudge(), cut, settings={"m": 2}, chunk_size=3)


def test_constitution_becomes_the_rubric():
    rubric = constitution_rubric("1. Be kind.\n")
    assert "1. Be kind." in rubric
    assert all(p in rubric for p in ("{prompt}", "{response_a}", "{response_b}"))
    own = "Rate {prompt} with {response_a} vs {response_b}"
    assert constitution_rubric(own) == own


@pytest.fixture(autouse=True)
def longer_judge_kind(monkeypatch):
    """``test-longer:ANY`` builds a ``LongerJudge`` while a test runs."""
    monkeypatch.setitem(JUDGE_KINDS, "test-longer", lambda argument, **options: LongerJudge())


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["prefalign", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_label_command_end_to_end(monkeypatch, capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "pairs.jsonl"
    code, stdout, _ = run_cli(monkeypatch, capsys, "data", "label", "--model", tiny_model_dir,
                              "--prompts", "builtin:arithmetic?n=4", "--judge", "test-longer:x",
                              "--samples", "2", "--max-new-tokens", "5", "--out", out,
                              "--min-confidence", "0.05", "--random-control",
                              tmp_path / "control.jsonl")
    assert code == 0
    assert "pairs from 4 prompts" in stdout
    everything = [json.loads(line)["pair"] for line in
                  journal_path(out).read_text().splitlines()[1:]]
    assert len(everything) == 4
    assert all(len(r["chosen"]) >= len(r["rejected"]) for r in everything)
    rows = read(out)
    assert rows == [r for r in everything if r["metadata"]["confidence"] >= 0.05]
    assert len(read(tmp_path / "control.jsonl")) == len(rows)
    assert "principles" in (tmp_path / "pairs.rubric.md").read_text()


def _one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("rows, fragments", [
    ([{"prompt": "fine"}, {"question": "no prompt"}], (":2", "'prompt'", "missing")),
    ([{"prompt": "fine"}, {"prompt": ""}], (":2", "'prompt'", "empty")),
])
def test_bad_prompt_file_is_one_line(monkeypatch, capsys, tmp_path, rows, fragments):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_cli(monkeypatch, capsys, "data", "label", "--model", "tiny", "--prompts",
                           prompts, "--judge", "test-longer:x", "--out", tmp_path / "o.jsonl")
    _one_line_error(code, err, str(prompts), *fragments)


def test_unknown_judge_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "data", "label", "--model", "tiny", "--prompts",
                           "builtin:arithmetic?n=2", "--judge", "nope:x", "--out",
                           tmp_path / "o.jsonl")
    _one_line_error(code, err, "unknown judge", "lm")
