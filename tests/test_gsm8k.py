"""GSM8K: final-answer extraction, answer matching, the loader and the verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefalign.errors import DataError
from prefalign.rewards import build_reward
from prefalign.stages.online.prompts import load_prompt_source
from prefalign.tasks.gsm8k import (
    answers_match,
    completion_answer,
    extract_final_answer,
    load_gsm8k,
    looks_like_gsm8k,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_final_answer_follows_the_last_marker():
    assert extract_final_answer("48/2 = <<48/2=24>>24\n#### 72") == "72"
    assert extract_final_answer("steps\n#### 1,234") == "1234"
    assert extract_final_answer("no marker here") is None


@pytest.mark.parametrize("completion,gold,expected", [
    ("She sold 72 clips.\n#### 72", "72", True),
    ("The answer is 72.", "72", True),
    ("It costs $1,234.00 in total", "1234", True),
    ("#### 72.5", "72", False),
    ("First 72, then #### 18", "72", False),
    ("12 apples and 7 pears make 19", "19", True),
    ("no number at all", "19", False),
    ("-5 degrees", "-5", True),
])
def test_answers_match(completion, gold, expected):
    assert answers_match(completion, gold) is expected


def test_completion_answer_prefers_the_marker():
    assert completion_answer("I think 3, so #### 4 and 5") == "4"
    assert completion_answer("3 then 5") == "5"


def test_load_gsm8k_folder_and_file(tmp_path):
    rows = [{"question": "Q1?", "answer": "a\n#### 3"}, {"question": "Q2?", "answer": "b\n#### 4"}]
    write_rows(tmp_path / "train.jsonl", rows)
    write_rows(tmp_path / "test.jsonl", rows[:1])
    records = load_gsm8k(tmp_path)
    assert records == [{"prompt": "Q1?", "answer": "3", "solution": "a\n#### 3"},
                       {"prompt": "Q2?", "answer": "4", "solution": "b\n#### 4"}]
    assert len(load_gsm8k(tmp_path, "test")) == 1
    assert looks_like_gsm8k(str(tmp_path)) and looks_like_gsm8k(str(tmp_path / "test.jsonl"))
    assert load_prompt_source(str(tmp_path)) == records


def test_bad_gsm8k_rows_name_file_line_and_field(tmp_path):
    path = write_rows(tmp_path / "bad.jsonl", [{"question": "Q?", "answer": "a\n#### 1"},
                                               {"question": "Q?", "answer": "no final line"}])
    with pytest.raises(DataError) as info:
        load_gsm8k(path)
    assert info.value.line == 2 and info.value.field == "answer"
    other = write_rows(tmp_path / "prompts.jsonl", [{"prompt": "hi"}])
    assert not looks_like_gsm8k(str(other))


def test_gsm8k_verifier_reads_the_answer_field():
    verifier = build_reward("gsm8k")
    assert verifier.required_fields == ("answer",)
    scores = verifier(["q", "q"], ["#### 72", "#### 71"], [{"answer": "72"}, {"answer": "72"}])
    assert scores.tolist() == [1.0, 0.0]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared GSM8K copy not present")
def test_shared_gsm8k_loads_as_a_prompt_set():
    train = load_prompt_source(str(SHARED))
    assert len(train) == 7473 and train[0]["answer"] == "72"
    assert answers_match("... so #### 72", train[0]["answer"])
    test = load_prompt_source(str(SHARED / "test.jsonl"))
    assert len(test) == 800 and all(r["answer"] for r in test)
