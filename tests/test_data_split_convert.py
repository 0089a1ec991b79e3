"""Deterministic leakage-free splits, the hh-rlhf converter, and the data commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from prefalign.data.convert import convert_file, hh_to_preference, parse_hh_transcript
from prefalign.data.load import load_records, read_rows, write_jsonl
from prefalign.data.schema import UnusableRecord, validate_record
from prefalign.data.split import check_leakage, parse_fractions, split_records
from prefalign.errors import ConfigError, DataError

HH_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / \
    "pairs.jsonl"


def _records(n: int) -> list[dict]:
    return [{"prompt": f"question {i % (n // 2)}", "completion": f"answer {i}"} for i in range(n)]


# ---------------------------------------------------------------- splits

def test_split_is_deterministic_ordered_and_groups_prompts():
    records = _records(400)
    splits = split_records(records, {"train": 0.8, "val": 0.2}, seed=7)
    assert splits == split_records(records, {"train": 0.8, "val": 0.2}, seed=7)
    assert splits != split_records(records, {"train": 0.8, "val": 0.2}, seed=8)
    assert sum(len(part) for part in splits.values()) == 400
    for part in splits.values():
        positions = [records.index(r) for r in part]
        assert positions == sorted(positions)
    homes = {}
    for name, part in splits.items():
        for record in part:
            homes.setdefault(record["prompt"], set()).add(name)
    assert all(len(names) == 1 for names in homes.values())
    check_leakage(splits)


def test_split_assignment_is_the_seeded_hash_of_the_prompt():
    records = _records(60)
    splits = split_records(records, {"a": 0.5, "b": 0.3, "c": 0.2}, seed=11)
    for name, part in splits.items():
        for record in part:
            text = "11\x00" + json.dumps(record["prompt"])
            u = int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) / 2**64
            expected = "a" if u < 0.5 else "b" if u < 0.8 else "c"
            assert name == expected


def test_split_is_stable_when_other_records_change_and_fractions_hold():
    records = [{"prompt": f"p{i}", "completion": "c"} for i in range(3000)]
    full = split_records(records, {"train": 0.9, "val": 0.1}, seed=0)
    half = split_records(records[::2], {"train": 0.9, "val": 0.1}, seed=0)
    assert half["val"] == [r for r in full["val"] if int(r["prompt"][1:]) % 2 == 0]
    assert 0.08 < len(full["val"]) / 3000 < 0.12


def test_split_conversational_prompts_and_bad_fractions():
    prompt = [{"role": "user", "content": "hi"}]
    records = [{"prompt": prompt, "completion": str(i)} for i in range(5)]
    splits = split_records(records, {"train": 0.5, "val": 0.5}, seed=0)
    assert sorted(len(part) for part in splits.values()) == [0, 5]
    for fractions in ({"train": 0.9}, {"train": 1.2, "val": -0.2}, {"train": 1.0, "val": 0.0},
                      {}):
        with pytest.raises(ConfigError):
            split_records(records, fractions, seed=0)


def test_parse_fractions():
    assert parse_fractions("train=0.9, val=0.1") == {"train": 0.9, "val": 0.1}
    for text in ("train", "train=x", "=0.5", "a=0.5,a=0.5"):
        with pytest.raises(ConfigError):
            parse_fractions(text)


def test_check_leakage_names_count_and_example():
    splits = {"train": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}],
              "val": [{"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}]}
    with pytest.raises(DataError) as info:
        check_leakage(splits)
    assert "2 prompt value(s)" in str(info.value) and '"b" in train and val' in str(info.value)


# ---------------------------------------------------------------- hh-rlhf conversion

def test_hh_single_and_multi_turn():
    row = {"chosen": "\n\nHuman: Hi there\n\nAssistant:  Hello! ",
           "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."}
    assert hh_to_preference(row) == {"prompt": [{"role": "user", "content": "Hi there"}],
                                     "chosen": "Hello!", "rejected": "Go away."}
    history = "\n\nHuman: a?\n\nAssistant: b.\n\nHuman: c?"
    row = {"chosen": history + "\n\nAssistant: good", "rejected": history + "\n\nAssistant: bad"}
    record = hh_to_preference(row)
    assert [m["role"] for m in record["prompt"]] == ["user", "assistant", "user"]
    assert record["prompt"][2]["content"] == "c?" and record["chosen"] == "good"
    assert validate_record(record, "preference") == record


def test_hh_diverging_history_and_repeated_speaker():
    # the histories differ in an earlier reply: the prompt stops at the last shared user turn
    chosen = "\n\nHuman: a?\n\nAssistant: b.\n\nHuman: c?\n\nAssistant: d"
    rejected = "\n\nHuman: a?\n\nAssistant: other"
    with pytest.raises(UnusableRecord, match="diverge"):
        hh_to_preference({"chosen": chosen, "rejected": rejected})
    # two Assistant turns in a row are one reply
    chosen = "\n\nHuman: a?\n\nAssistant: part one.\n\nAssistant: part two."
    record = hh_to_preference({"chosen": chosen, "rejected": "\n\nHuman: a?\n\nAssistant: no"})
    assert record["prompt"] == [{"role": "user", "content": "a?"}]
    assert record["chosen"] == "part one.\n\npart two." and record["rejected"] == "no"


@pytest.mark.parametrize("chosen, words", [
    ("no markers at all", "no '"),
    ("preamble\n\nHuman: a\n\nAssistant: b", "before the first"),
    ("\n\nHuman: a\n\nAssistant: b\n\nHuman: c", "end with an 'Assistant:'"),
    (42, "expected a transcript"),
])
def test_hh_malformed_transcripts(chosen, words):
    with pytest.raises(DataError) as info:
        hh_to_preference({"chosen": chosen, "rejected": "\n\nHuman: a\n\nAssistant: b"},
                         file="raw.jsonl", line=5)
    assert not isinstance(info.value, UnusableRecord)
    assert words in str(info.value) and "raw.jsonl:5" in str(info.value)


def test_convert_file_counts_skips_and_stops_at_malformed(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"},
        {"chosen": "\n\nHuman: q\n\nAssistant: ", "rejected": "\n\nHuman: q\n\nAssistant: no"},
        {"chosen": "\n\nHuman: r\n\nAssistant: same", "rejected": "\n\nHuman: r\n\nAssistant: same"},
    ]
    src = write_jsonl(rows, tmp_path / "raw.jsonl")
    counts = convert_file(src, tmp_path / "pairs.jsonl")
    assert counts.converted == 1
    assert counts.skipped == {"empty reply": 1, "chosen and rejected replies are identical": 1}
    assert "converted 1 of 3 rows" in counts.summary()
    assert load_records(tmp_path / "pairs.jsonl", "preference") == [
        {"prompt": [{"role": "user", "content": "q"}], "chosen": "yes", "rejected": "no"}]
    write_jsonl(rows + [{"chosen": "junk", "rejected": "junk"}], src)
    with pytest.raises(DataError, match=r"raw\.jsonl:4"):
        convert_file(src, tmp_path / "pairs.jsonl")
    with pytest.raises(ConfigError, match="hh"):
        convert_file(src, tmp_path / "x.jsonl", fmt="shp")


@pytest.mark.skipif(not HH_PAIRS.is_file(), reason="shared hh-rlhf sample not present")
def test_hh_real_rows(tmp_path):
    sample = tmp_path / "sample.jsonl"
    raw = [row for _, row in read_rows(HH_PAIRS)][:40]
    write_jsonl(raw, sample)
    counts = convert_file(sample, tmp_path / "pairs.jsonl")
    records = load_records(tmp_path / "pairs.jsonl", "preference")
    assert counts.converted == len(records) >= 35
    for record in records:
        original = next(r for r in raw if r["chosen"].rstrip().endswith(record["chosen"]))
        assert original["rejected"].rstrip().endswith(record["rejected"])
        assert original["chosen"].startswith("\n\nHuman: " + record["prompt"][0]["content"])
        assert len(parse_hh_transcript(original["chosen"], "chosen")) == len(record["prompt"]) + 1


# ---------------------------------------------------------------- command line

@pytest.fixture
def data_cli():
    from typer.testing import CliRunner

    from prefalign.cli.data import data_app

    runner = CliRunner()
    return lambda *args: runner.invoke(data_app, [str(a) for a in args])


def test_cli_validate_ok_and_error(data_cli, tmp_path):
    good = write_jsonl([{"prompt": "p", "chosen": "a", "rejected": "b"}] * 3, tmp_path / "g.jsonl")
    result = data_cli("validate", good, "--kind", "preference")
    assert result.exit_code == 0 and "3 preference records" in result.output
    assert result.output.strip().endswith("OK")
    bad = write_jsonl([{"prompt": "p", "chosen": "a"}], tmp_path / "b.jsonl")
    result = data_cli("validate", bad, "--kind", "preference")
    assert isinstance(result.exception, DataError) and result.exception.field == "rejected"


def test_cli_split_writes_disjoint_files(data_cli, tmp_path):
    src = write_jsonl(_records(200), tmp_path / "sft.jsonl")
    result = data_cli("split", src, "--kind", "sft", "--out", tmp_path / "splits",
                      "--fractions", "train=0.7,val=0.2,test=0.1", "--seed", "3")
    assert result.exit_code == 0, result.output
    parts = {name: load_records(tmp_path / "splits" / f"{name}.jsonl", "sft")
             for name in ("train", "val", "test")}
    assert parts == split_records(load_records(src, "sft"),
                                  {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    assert f"val: {len(parts['val'])} records" in result.output


def test_cli_inspect_with_token_statistics(data_cli, tmp_path, tiny_model_dir):
    src = write_jsonl([{"prompt": "hi", "completion": f"answer {i}"} for i in range(5)],
                      tmp_path / "sft.jsonl")
    result = data_cli("inspect", src, "--kind", "sft", "--n", 2, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "--- record 1" in result.output and "--- record 2" not in result.output
    assert "prompt tokens: min" in result.output and "completion tokens: min" in result.output


def test_cli_convert_hh(data_cli, tmp_path):
    src = write_jsonl([{"chosen": "\n\nHuman: q\n\nAssistant: yes",
                        "rejected": "\n\nHuman: q\n\nAssistant: no"}], tmp_path / "raw.jsonl")
    result = data_cli("convert-hh", src, tmp_path / "out.jsonl")
    assert result.exit_code == 0 and "converted 1 of 1 rows" in result.output
    assert len(load_records(tmp_path / "out.jsonl", "preference")) == 1
