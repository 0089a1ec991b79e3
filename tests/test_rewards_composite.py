"""The reward registry, the programmatic rewards and weighted composites."""

from __future__ import annotations

import math

import pytest
import torch

from prefalign.errors import ConfigError, DataError
from prefalign.rewards import (
    REWARDS,
    available_rewards,
    build_composite,
    build_reward,
    count_hollow_openers,
    load_composite_spec,
    register_reward,
)
from prefalign.rewards.composite import component_summary


def test_registry_lists_builtin_rewards_and_rejects_unknown_names_and_params():
    names = available_rewards()
    assert {"length_gate", "hollow_opener", "rm"} <= set(names)
    with pytest.raises(ConfigError, match="unknown reward 'length_gat'.*mean 'length_gate'"):
        build_reward("length_gat")
    with pytest.raises(ConfigError, match="no parameter 'max_wrds'.*'max_words'"):
        build_reward("length_gate", max_wrds=3)
    with pytest.raises(ConfigError, match="needs parameter.*path"):
        build_reward("rm")
    with pytest.raises(ConfigError, match="mode must be one of"):
        build_reward("hollow_opener", mode="soft")


def test_register_reward_adds_a_factory_and_refuses_a_second_owner():
    class Constant:
        required_fields = ("answer",)
        name = "constant"

        def __init__(self, value: float):
            self.value = value

        def __call__(self, prompts, completions, rows):
            return torch.full((len(completions),), self.value)

    @register_reward("test_constant")
    def constant(value: float = 1.0):
        return Constant(value)

    try:
        assert build_reward("test_constant", value=2.5)(["p"], ["c"], [{}]).item() == 2.5
        with pytest.raises(ValueError, match="already registered"):
            register_reward("test_constant")(lambda: Constant(0.0))
        composite = build_composite([{"name": "test_constant", "weight": 1.0}])
        with pytest.raises(DataError, match="needs field 'answer'"):
            composite(["p"], ["c"], [{}])
    finally:
        REWARDS.pop("test_constant")


def test_length_gate_binary_and_continuous():
    completions = ["one two three", "one two three four five six", ""]
    binary = build_reward("length_gate", max_words=4)
    continuous = build_reward("length_gate", max_words=4, mode="continuous")
    assert binary(["p"] * 3, completions, [{}] * 3).tolist() == [1.0, 0.0, 1.0]
    assert continuous(["p"] * 3, completions, [{}] * 3).tolist() == pytest.approx(
        [1.0, 4 / 6, 1.0])


@pytest.mark.parametrize("text,count", [
    ("That's a great question! The capital is Paris.", 1),
    ("Absolutely! Great question! Here it is.", 2),
    ("Certainly, what a fascinating question. I'd be happy to help! 4", 3),
    ("That\u2019s a really good question. 7", 1),
    ("Absolutely nothing changes here.", 0),
    ("The answer is 4.", 0),
    ("Great", 1),
])
def test_hollow_openers_are_counted_only_at_the_start(text, count):
    assert count_hollow_openers(text) == count


def test_hollow_opener_binary_and_continuous_forms():
    texts = ["Paris.", "Absolutely! Paris.", "Of course! Great question! Sure thing! Paris."]
    binary = build_reward("hollow_opener")(["p"] * 3, texts, [{}] * 3)
    continuous = build_reward("hollow_opener", mode="continuous")(["p"] * 3, texts, [{}] * 3)
    assert binary.tolist() == [0.0, 1.0, 1.0]
    assert continuous.tolist() == pytest.approx([0.0, 0.5, 1 - 2 ** -3])


class _Unbounded:
    """A stand-in reward-model score: unbounded, so a composite squashes it."""

    required_fields = ()
    bounded = False
    name = "fake_rm"

    def __call__(self, prompts, completions, rows):
        return torch.tensor([float(len(c)) - 3.0 for c in completions])


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_composite_is_the_weighted_sum_with_rm_scores_squashed():
    REWARDS["test_fake_rm"] = lambda: _Unbounded()
    try:
        composite = build_composite([
            {"name": "test_fake_rm", "weight": 2.0},
            {"name": "length_gate", "weight": 0.5, "params": {"max_words": 2}},
            {"name": "hollow_opener", "weight": -1.0, "params": {"mode": "continuous"}},
            {"name": "length_gate", "weight": 0.25, "params": {"max_words": 1},
             "squash": True},
        ])
        completions = ["Sure thing! ok", "abcd"]
        parts = composite.components(["p", "q"], completions, [{}, {}])
        assert list(parts) == ["test_fake_rm", "length_gate", "hollow_opener", "length_gate_1"]
        expected = [2.0 * _sigmoid(len(c) - 3.0) for c in completions]
        expected[0] += 0.5 * 0.0 - 1.0 * 0.5 + 0.25 * _sigmoid(0.0)
        expected[1] += 0.5 * 1.0 - 1.0 * 0.0 + 0.25 * _sigmoid(1.0)
        total = composite(["p", "q"], completions, [{}, {}])
        assert total.tolist() == pytest.approx(expected, rel=1e-6)
        summary = component_summary(composite, parts, total)
        assert summary["hollow_opener"]["weighted_mean"] == pytest.approx(-0.25)
        assert summary["total"]["mean"] == pytest.approx(sum(expected) / 2, rel=1e-6)
        assert composite.bounded
    finally:
        REWARDS.pop("test_fake_rm")


@pytest.mark.parametrize("specs,message", [
    ([], "at least one component"),
    ({"name": "length_gate"}, "list of components"),
    ([{"name": "length_gate", "wieght": 1}], "unknown key 'wieght'.*'weight'"),
    ([{"weight": 1}], "missing 'name'"),
    ([{"name": "length_gate", "weight": "high"}], "weight must be a number"),
    ([{"name": "length_gate", "label": "a"}, {"name": "hollow_opener", "label": "a"}],
     "share the label 'a'"),
])
def test_bad_composite_specs_are_config_errors(specs, message):
    with pytest.raises(ConfigError, match=message):
        build_composite(specs)


def test_load_composite_spec_accepts_a_list_or_a_components_key(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- {name: length_gate, weight: 1.0}\n")
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text("components:\n  - name: hollow_opener\n    weight: -1\n")
    assert load_composite_spec(listed)[0]["name"] == "length_gate"
    assert load_composite_spec(keyed)[0]["weight"] == -1
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights: {a: 1}\n")
    with pytest.raises(ConfigError, match="components"):
        load_composite_spec(bad)
