"""Weighted data mixtures in ``data.train``: shares by weight, draws within a source, held-out
split per source before mixing, the plain-string form unchanged, and clear errors."""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re

import pytest

from prefalign.config import DataConfig, PreferenceConfig, load_config
from prefalign.errors import ConfigError, DataError
from prefalign.stages.common import load_train_eval
from prefalign.stages.online.prompts import load_prompt_sets

ARITHMETIC = "builtin:arithmetic?n=400&seed=0"
PROBLEM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")


@pytest.fixture
def question_file(tmp_path):
    rows = [{"prompt": f"question {i}", "chosen": f"answer {i}", "rejected": "no idea"}
            for i in range(600)]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def origin(record: dict) -> str:
    return "file" if record["prompt"].startswith("question") else "arithmetic"


def problem(record: dict) -> tuple:
    """Written out here: a sum is the same problem in either order, a difference is not."""
    a, op, b = PROBLEM.search(record["prompt"]).groups()
    a, b = int(a), int(b)
    return (min(a, b), op, max(a, b)) if op == "+" else (a, op, b)


def held_out_by_hash(prompt: str, seed: int, fraction: float) -> bool:
    """The documented split rule, written out: sha256 of ``held-out:<seed>\\0<canonical JSON
    of the prompt>``, first 8 bytes over 2**64, held out when at or above 1 − fraction."""
    text = json.dumps(prompt, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(f"held-out:{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 >= 1 - fraction


def mixture(file, weight_file: float, weight_arithmetic: float, **extra) -> DataConfig:
    return DataConfig(train=[{"source": str(file), "weight": weight_file},
                             {"source": ARITHMETIC, "weight": weight_arithmetic}], **extra)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_shares_follow_the_weights(question_file, seed):
    total = 500
    train, _ = load_train_eval(mixture(question_file, 0.7, 0.3, max_examples=total),
                               "preference", seed)
    counts = collections.Counter(origin(r) for r in train)
    assert len(train) == total
    share = counts["file"] / total
    assert abs(share - 0.7) <= 3 * math.sqrt(0.7 * 0.3 / total)  # 3-sigma binomial bound
    assert abs(counts["file"] - 0.7 * total) < 1  # and apportioned to the record
    # enough records in each source: drawn without replacement
    assert len({r["prompt"] for r in train}) == total


def test_draws_are_seeded_and_reproducible(question_file):
    data = mixture(question_file, 1.0, 1.0, max_examples=200)
    first, _ = load_train_eval(data, "preference", 0)
    again, _ = load_train_eval(data, "preference", 0)
    other, _ = load_train_eval(data, "preference", 1)
    assert first == again and first != other
    assert [origin(r) for r in first] != sorted(origin(r) for r in first)  # shuffled


def test_a_source_too_small_for_its_share_is_upsampled_evenly(question_file):
    train, _ = load_train_eval(mixture(question_file, 0.2, 0.8, max_examples=1000),
                               "preference", 0)
    arithmetic = collections.Counter(json.dumps(r, sort_keys=True) for r in train
                                     if origin(r) == "arithmetic")
    everything, _ = load_train_eval(DataConfig(train=ARITHMETIC), "preference", 0)
    assert sum(arithmetic.values()) == 800 and len(arithmetic) == len(everything)
    low = 800 // len(everything)
    assert set(arithmetic.values()) <= {low, low + 1}


def test_default_size_is_the_sources_training_records_together(question_file):
    alone_file, _ = load_train_eval(DataConfig(train=str(question_file)), "preference", 0)
    alone_arithmetic, _ = load_train_eval(DataConfig(train=ARITHMETIC), "preference", 0)
    train, _ = load_train_eval(mixture(question_file, 1.0, 3.0), "preference", 0)
    total = len(alone_file) + len(alone_arithmetic)
    assert len(train) == total
    assert abs(sum(origin(r) == "arithmetic" for r in train) - 0.75 * total) < 1


def test_held_out_is_split_per_source_and_disjoint_from_training(question_file):
    train, held_out = load_train_eval(mixture(question_file, 0.5, 0.5, eval_fraction=0.2,
                                              max_examples=300), "preference", 0)
    by_origin = collections.defaultdict(list)
    for record in held_out:
        by_origin[origin(record)].append(record)
    # the file's held-out records are exactly those the hash rule holds out
    expected = [f"question {i}" for i in range(600)
                if held_out_by_hash(f"question {i}", 0, 0.2)]
    assert [r["prompt"] for r in by_origin["file"]] == expected
    assert 0.1 < len(by_origin["arithmetic"]) / 400 < 0.3
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held_out}
    train_problems = {problem(r) for r in train if origin(r) == "arithmetic"}
    assert not train_problems & {problem(r) for r in by_origin["arithmetic"]}
    # the same held-out records as each source alone
    _, alone = load_train_eval(DataConfig(train=ARITHMETIC, eval_fraction=0.2), "preference", 0)
    assert by_origin["arithmetic"] == alone


def test_plain_string_keeps_its_behaviour(question_file):
    train, held_out = load_train_eval(DataConfig(train=str(question_file), max_examples=100),
                                      "preference", 0)
    rows = [json.loads(line) for line in question_file.read_text().splitlines()]
    kept = [r for r in rows if not held_out_by_hash(r["prompt"], 0, 0.1)]
    assert train == kept[:100]  # file order, the first max_examples
    assert held_out == [r for r in rows if held_out_by_hash(r["prompt"], 0, 0.1)]


def test_online_prompt_sets_take_a_mixture():
    data = DataConfig(train=[{"source": "builtin:arithmetic?n=200&seed=1", "weight": 1},
                             {"source": "countdown:n=200&seed=0", "weight": 1}],
                      max_examples=100)
    train, held_out = load_prompt_sets(data, 0)
    from_arithmetic = sum(PROBLEM.search(r["prompt"]) is not None for r in train)
    assert len(train) == 100 and from_arithmetic == 50 and held_out


@pytest.mark.parametrize("weight,fragment", [
    (0, "greater than 0"), ("abc", "valid number"), (-1, "greater than 0"),
    (".nan", "finite number"), ("true", "positive number")])
def test_bad_weight_is_one_config_error_line(weight, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(PreferenceConfig, None,
                    [f"data.train=[{{source: a.jsonl, weight: 1}}, "
                     f"{{source: b.jsonl, weight: {weight}}}]"])
    message = str(info.value)
    assert "data.train" in message and "mixture source 1 weight" in message
    assert fragment in message and "\n" not in message


def test_missing_keys_and_unknown_sources_are_clear():
    with pytest.raises(ConfigError, match="mixture source 0 weight: Field required"):
        load_config(PreferenceConfig, None, ["data.train=[{source: a.jsonl}]"])
    with pytest.raises(ConfigError, match="at least one"):
        load_config(PreferenceConfig, None, ["data.train=[]"])
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        load_train_eval(DataConfig(train=[{"source": "nope.jsonl", "weight": 1}]),
                        "preference", 0)
    with pytest.raises(DataError, match="builtin:nosuchtask"):
        load_train_eval(DataConfig(train=[{"source": ARITHMETIC, "weight": 1},
                                          {"source": "builtin:nosuchtask", "weight": 1}]),
                        "preference", 0)


def test_a_yaml_mixture_trains_and_is_recorded(tmp_path, tiny_model_dir, question_file,
                                               monkeypatch):
    from prefalign.stages.preference import run_preference

    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "mix.yaml"
    config.write_text(f"""
name: mix
output_dir: {tmp_path / 'runs'}
model: {{name: {tiny_model_dir}, lora: {{r: 4, alpha: 8}}}}
data:
  train:
    - {{source: {question_file}, weight: 0.7}}
    - {{source: "builtin:arithmetic?n=40&seed=2", weight: 0.3}}
  max_examples: 20
  max_length: 48
  max_prompt_length: 32
train: {{max_steps: 2, batch_size: 4, save_every: 0, threads: 1}}
""")
    cfg = load_config(PreferenceConfig, config)
    result = run_preference(cfg)
    assert result.step == 2
    saved = load_config(PreferenceConfig, cfg.run_dir / "config.yaml")
    assert saved.data.train == cfg.data.train
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["train_pairs"] == 20
