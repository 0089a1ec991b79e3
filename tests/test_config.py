"""Typed configs: overrides, unknown keys with suggestions, type errors."""

from __future__ import annotations

import pytest

from prefalign.config import SFTConfig, load_config, parse_overrides
from prefalign.errors import ConfigError


def test_overrides_nest_and_parse_yaml_values():
    assert parse_overrides(["train.lr=1e-4", "model.lora=null", "name=x", "train.trackers=[a]"]) \
        == {"train": {"lr": 1e-4, "trackers": ["a"]}, "model": {"lora": None}, "name": "x"}


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ndata:\n  train: d.jsonl\ntrain:\n  lr: 0.1\n  batch_size: 2\n")
    cfg = load_config(SFTConfig, path, ["train.lr=0.5", "model.lora=null"])
    assert cfg.name == "a" and cfg.train.lr == 0.5 and cfg.train.batch_size == 2
    assert cfg.model.lora is None and cfg.data.train == "d.jsonl"


def test_misspelled_key_names_key_and_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: d.jsonl\ntrain:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(SFTConfig, path)
    assert "train.learning_rat" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_config(SFTConfig, None, ["data.train=x", "train.batchsize=3"])
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        load_config(SFTConfig, None, ["data.train=x", "model.lora.alpah=3"])


def test_wrong_type_and_missing_key_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(SFTConfig, None, ["data.train=x", "train.lr=fast"])
    with pytest.raises(ConfigError, match="missing required config key 'data'"):
        load_config(SFTConfig, None, [])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(SFTConfig, None, ["data.train"])


def test_override_values_number_words_and_malformed_yaml():
    assert parse_overrides(["a=1e-4", "b=-3", "c=.5", "d=nan", "e=inf", "f=abc"]) == \
        {"a": 1e-4, "b": -3, "c": 0.5, "d": "nan", "e": "inf", "f": "abc"}
    with pytest.raises(ConfigError, match="value \"'\" is not valid YAML"):
        parse_overrides(["train.lr='"])
    with pytest.raises(ConfigError) as caught:
        parse_overrides(["train.lr=@\n"])
    assert "\n" not in str(caught.value)
