"""Record validation (every kind, every bad-input case) and file reading/writing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from prefalign.data.load import (
    dataset_fingerprint,
    load_records,
    parse_hf_source,
    read_rows,
    write_jsonl,
)
from prefalign.data.schema import validate_record, validate_records
from prefalign.errors import ConfigError, DataError

USER = {"role": "user", "content": "What is 12 + 7?"}
ASSISTANT = {"role": "assistant", "content": "19"}


def _error(row, kind, **where) -> DataError:
    with pytest.raises(DataError) as info:
        validate_record(row, kind, **where)
    return info.value


# ---------------------------------------------------------------- valid records

def test_sft_prompt_completion_and_messages_forms():
    assert validate_record({"prompt": "Hi", "completion": "Hello"}, "sft") == {
        "prompt": "Hi", "completion": "Hello"}
    system = {"role": "system", "content": "Be brief."}
    record = validate_record({"messages": [system, USER, ASSISTANT]}, "sft")
    assert record == {"prompt": [system, USER], "completion": [ASSISTANT]}


def test_preference_explicit_prompt_keeps_margin_and_metadata_drops_the_rest():
    row = {"prompt": [USER], "chosen": [ASSISTANT], "rejected": "20", "margin": 2,
           "metadata": {"source": "x"}, "extra": 1}
    assert validate_record(row, "preference") == {
        "prompt": [USER], "chosen": [ASSISTANT], "rejected": "20", "margin": 2.0,
        "metadata": {"source": "x"}}


def test_preference_implicit_prompt_is_the_shared_prefix():
    system = {"role": "system", "content": "Be brief."}
    bad = {"role": "assistant", "content": "20"}
    row = {"chosen": [system, USER, ASSISTANT], "rejected": [system, USER, bad]}
    assert validate_record(row, "preference") == {
        "prompt": [system, USER], "chosen": [ASSISTANT], "rejected": [bad]}


def test_preference_implicit_prompt_backs_off_to_a_user_turn():
    # identical replies: the shared prefix would swallow them; the prompt stops at the user turn
    row = {"chosen": [USER, ASSISTANT], "rejected": [USER, ASSISTANT]}
    assert validate_record(row, "preference")["prompt"] == [USER]


def test_unpaired_labels_and_prompt_kind_keeps_verifier_fields():
    for label, expected in ((True, True), (0, False), (1, True), ("false", False)):
        row = {"prompt": "p", "completion": "c", "label": label}
        assert validate_record(row, "unpaired")["label"] is expected
    row = {"prompt": "Compute 3 + 4", "answer": "7", "numbers": [3, 4]}
    assert validate_record(row, "prompt") == row


def test_rated_score_becomes_float():
    assert validate_record({"prompt": "p", "response": "r", "score": 3}, "rated")["score"] == 3.0


# ---------------------------------------------------------------- bad records

def test_missing_completion_names_field_file_and_line():
    error = _error({"prompt": "Hi"}, "sft", file="data.jsonl", line=7)
    assert (error.field, error.line, error.file) == ("completion", 7, "data.jsonl")
    assert "data.jsonl:7" in str(error) and "completion" in str(error)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_or_whitespace_text_is_rejected(text):
    error = _error({"prompt": "Hi", "completion": text}, "sft")
    assert error.field == "completion" and "empty" in str(error)


def test_number_where_text_expected():
    error = _error({"prompt": 12, "chosen": "a", "rejected": "b"}, "preference")
    assert error.field == "prompt" and "got a number" in str(error)


def test_non_numeric_score_names_the_field():
    error = _error({"prompt": "p", "response": "r", "score": "high"}, "rated")
    assert error.field == "score" and "number" in str(error)
    assert _error({"prompt": "p", "response": "r", "score": True}, "rated").field == "score"


@pytest.mark.parametrize("message, field, words", [
    ({"content": "x"}, "prompt[0]", "no 'role'"),
    ({"role": "user"}, "prompt[0]", "no 'content'"),
    ({"role": "wizard", "content": "x"}, "prompt[0].role", "unknown role"),
    ("just text", "prompt[0]", "message object"),
    ({"role": "user", "content": ""}, "prompt[0].content", "empty"),
])
def test_malformed_messages(message, field, words):
    error = _error({"prompt": [message], "completion": "c"}, "sft")
    assert error.field == field and words in str(error)


def test_completion_messages_must_be_assistant_and_sft_must_end_with_assistant():
    error = _error({"prompt": "p", "completion": [USER]}, "sft")
    assert error.field == "completion[0].role"
    error = _error({"messages": [USER, ASSISTANT, USER]}, "sft")
    assert error.field == "messages[2].role" and "assistant" in str(error)


def test_implicit_prompt_needs_conversations_and_hints_at_hh():
    error = _error({"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "x"}, "preference")
    assert error.field == "prompt" and "convert-hh" in str(error)
    diverging = {"chosen": [USER, ASSISTANT, USER, ASSISTANT],
                 "rejected": [USER, {"role": "assistant", "content": "other"}]}
    assert _error(diverging, "preference").field == "chosen[2].role"


def test_bad_label_row_type_and_kind():
    assert _error({"prompt": "p", "completion": "c", "label": 2}, "unpaired").field == "label"
    assert "JSON object" in str(_error(["not", "a", "dict"], "sft"))
    with pytest.raises(ConfigError, match="preference"):
        validate_record({"prompt": "p"}, "dpo")


def test_validate_records_reports_the_line_of_each_row():
    rows = [(1, {"prompt": "a", "completion": "b"}), (4, {"prompt": "a", "completion": ""})]
    with pytest.raises(DataError) as info:
        validate_records(rows, "sft", file="f.jsonl")
    assert info.value.line == 4
    with pytest.raises(DataError) as info:  # bare rows are numbered 1, 2, ...
        validate_records([{"prompt": "a", "completion": "b"}, {"prompt": "a"}], "sft")
    assert info.value.line == 2


# ---------------------------------------------------------------- reading files

def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", '{"prompt": "a"}\n\n{"prompt": "b",\n')
    with pytest.raises(DataError) as info:
        read_rows(path)
    assert info.value.line == 3 and f"{path}:3" in str(info.value)


def test_jsonl_row_that_is_not_an_object(tmp_path):
    path = _write(tmp_path / "list.jsonl", '{"prompt": "a"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"list\.jsonl:2: expected a JSON object"):
        read_rows(path)


def test_blank_lines_keep_line_numbers(tmp_path):
    path = _write(tmp_path / "gaps.jsonl", '{"a": 1}\n\n{"a": 2}\n')
    assert read_rows(path) == [(1, {"a": 1}), (3, {"a": 2})]


def test_bad_row_in_load_records_reports_its_line(tmp_path):
    rows = [{"prompt": "a", "completion": "b"}] * 2 + [{"prompt": "a", "completion": 3}]
    path = _write(tmp_path / "sft.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as info:
        load_records(path, "sft")
    assert (info.value.line, info.value.field) == (3, "completion")
    assert str(path) in str(info.value)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="no such file") as info:
        read_rows(tmp_path / "absent.jsonl")
    assert "absent.jsonl" in str(info.value)
    with pytest.raises(DataError) as info:
        read_rows(_write(tmp_path / "data.txt", "x"))
    assert all(ext in str(info.value) for ext in (".jsonl", ".json", ".parquet", ".csv"))


def test_json_array_and_data_wrapper_and_malformed_json(tmp_path):
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    assert read_rows(_write(tmp_path / "a.json", json.dumps(rows))) == [(1, rows[0]),
                                                                        (2, rows[1])]
    assert read_rows(_write(tmp_path / "b.json", json.dumps({"data": rows})))[1] == (2, rows[1])
    with pytest.raises(DataError, match="list of objects"):
        read_rows(_write(tmp_path / "c.json", json.dumps({"rows": rows})))
    with pytest.raises(DataError) as info:
        read_rows(_write(tmp_path / "d.json", '[\n{"a": 1},\n{"a": }\n]'))
    assert info.value.line == 3


RATED = [{"prompt": "What is 2+2?", "response": "4", "score": 0.75},
         {"prompt": "Name a colour, please", "response": "Blue, \"sky\" blue", "score": -1.5}]
PAIRS = [{"prompt": [USER], "chosen": [ASSISTANT],
          "rejected": [{"role": "assistant", "content": "20"}], "margin": 1.0},
         {"prompt": "Say hi", "chosen": "hi", "rejected": "no", "margin": 0.5}]


def test_jsonl_and_json_round_trip(tmp_path):
    write_jsonl(PAIRS, tmp_path / "p.jsonl")
    assert load_records(tmp_path / "p.jsonl", "preference") == PAIRS
    _write(tmp_path / "p.json", json.dumps(PAIRS))
    assert load_records(tmp_path / "p.json", "preference") == PAIRS


def test_csv_round_trip_types_cells_and_empty_cells_are_absent(tmp_path):
    lines = ["prompt,response,score,metadata"]
    for row in RATED:
        response = '"' + row["response"].replace('"', '""') + '"'
        lines.append(f'"{row["prompt"]}",{response},{row["score"]},')
    path = _write(tmp_path / "rated.csv", "\n".join(lines) + "\n")
    assert load_records(path, "rated") == RATED
    bad = _write(tmp_path / "bad.csv", "prompt,response,score\np,r,1\np,r,lots\n")
    with pytest.raises(DataError) as info:
        load_records(bad, "rated")
    assert (info.value.line, info.value.field) == (2, "score")


def test_parquet_round_trip_with_messages(tmp_path):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "pairs.parquet"
    conversational = [PAIRS[0], {**PAIRS[0], "margin": 2.0}]
    pandas.DataFrame(conversational).to_parquet(path)
    assert load_records(path, "preference") == conversational
    pandas.DataFrame(RATED).to_parquet(tmp_path / "rated.parquet")
    assert load_records(tmp_path / "rated.parquet", "rated") == RATED


def test_hf_source_parsing():
    assert parse_hf_source("hf:gsm8k") == ("gsm8k", None, "train")
    assert parse_hf_source("hf:Anthropic/hh-rlhf:test") == ("Anthropic/hh-rlhf", None, "test")
    assert parse_hf_source("hf:openai/gsm8k/main:test") == ("openai/gsm8k", "main", "test")
    with pytest.raises(DataError):
        parse_hf_source("hf::train")


def test_hf_failure_becomes_one_line_data_error(monkeypatch):
    import datasets

    calls = []

    def offline(name, config=None, split=None):
        calls.append((name, config, split))
        raise ConnectionError("Couldn't reach the Hub\nTraceback details that must not show")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        read_rows("hf:openai/gsm8k/main:test")
    assert calls == [("openai/gsm8k", "main", "test")]
    message = str(info.value)
    assert "\n" not in message and "Couldn't reach the Hub" in message and "openai/gsm8k" in message


# ---------------------------------------------------------------- fingerprints and writing

def test_fingerprint_is_sha256_of_canonical_json():
    records = [{"prompt": "é", "completion": "b"}]
    canonical = '[{"completion":"b","prompt":"é"}]'
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    assert dataset_fingerprint(records) == expected
    assert dataset_fingerprint([{"completion": "b", "prompt": "é"}]) == expected
    assert dataset_fingerprint(records * 2) != expected


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "out" / "records.jsonl"
    write_jsonl(RATED, path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == RATED

    def failing():
        yield RATED[0]
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(failing(), path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == RATED
    assert os.listdir(path.parent) == ["records.jsonl"]
