"""Verifier rewards, the composite scorer, and the online prompt sources."""

from __future__ import annotations

import pytest
import torch

from prefalign.config.online import RewardSpec
from prefalign.errors import DataError
from prefalign.rewards import REWARDS, available_rewards, build_reward
from prefalign.stages.online.prompts import check_reward_fields, load_prompt_source
from prefalign.stages.online.scoring import RewardScorer, prompt_text
from prefalign.tasks.minigrid import generate_traces

ROW = {"numbers": [3, 5, 7], "target": 22}


def test_verifiers_are_registered_with_their_fields():
    assert {"countdown", "minigrid", "gsm8k", "arithmetic"} <= set(available_rewards())
    fields = {name: build_reward(name).required_fields
              for name in ("countdown", "minigrid", "gsm8k", "arithmetic")}
    assert fields == {"countdown": ("numbers", "target"), "minigrid": ("env_id", "seed", "step"),
                      "gsm8k": ("answer",), "arithmetic": ("answer",)}


def test_countdown_scores_correct_wellformed_and_missing_answers():
    verifier = build_reward("countdown", format_credit=0.2)
    completions = ["<answer>(3 + 8) * 2</answer>", "<answer>3 * 5 + 7</answer>",
                   "<answer>3 + 5</answer>", "no answer", "<answer>3 + + 5</answer>"]
    scores = verifier([""] * 5, completions, [ROW] * 5)
    # 8 and 2 are not given (well-formed, wrong); 3*5+7 = 22 is right; 8 ≠ 22.
    assert scores.tolist() == pytest.approx([0.2, 1.0, 0.2, 0.0, 0.0])
    assert verifier.passed([""] * 5, completions, [ROW] * 5) == [False, True, False, False, False]
    with pytest.raises(DataError, match="target"):
        verifier([""], ["<answer>1</answer>"], [{"numbers": [1]}])
    plain = build_reward("countdown")
    assert plain([""] * 2, completions[:2], [ROW] * 2).tolist() == pytest.approx([0.1, 1.0])


def test_countdown_numbers_credit_rewards_valid_expressions_over_the_given_numbers():
    verifier = build_reward("countdown", format_credit=0.1, numbers_credit=0.3)
    completions = ["<answer>3 + 5</answer>", "<answer>(7 - 3) * 5</answer>",
                   "<answer>3 + 3</answer>", "<answer>(1 + 2) * 3</answer>",
                   "<answer>3 * 5 + 7</answer>"]
    # Misses with given numbers earn 0.3; reusing 3 or using 1, 2 earn only 0.1.
    assert verifier([""] * 5, completions, [ROW] * 5).tolist() == pytest.approx(
        [0.3, 0.3, 0.1, 0.1, 1.0])


def test_arithmetic_verifier():
    verifier = build_reward("arithmetic")
    scores = verifier(["", ""], ["19", "The answer is 18"], [{"answer": 19}, {"answer": 19}])
    assert scores.tolist() == [1.0, 0.0]


def test_minigrid_executor_judges_the_subgoal_in_the_rows_state():
    traces = generate_traces(["MiniGrid-DoorKey-5x5-v0"], [0])
    assert traces, "the expert solves seed 0"
    verifier = build_reward("minigrid", format_credit=0.1)
    first = traces[0]
    row = {"env_id": first["env_id"], "seed": first["seed"], "step": first["step"]}
    completions = [" " + first["expert_subgoal"] + "\nmore text", "drop()", "walk around"]
    scores = verifier([""] * 3, completions, [row] * 3)
    assert scores.tolist() == pytest.approx([1.0, 0.1, 0.0])
    last = traces[-1]
    later = {"env_id": last["env_id"], "seed": last["seed"], "step": last["step"]}
    assert verifier([""], [last["expert_subgoal"]], [later]).tolist() == [1.0]
    with pytest.raises(DataError, match="no expert state"):
        verifier([""], ["drop()"], [dict(row, step=99)])


def test_composite_scorer_totals_components_and_verdicts():
    scorer = RewardScorer([RewardSpec(name="countdown"),
                           RewardSpec(name="length_gate", weight=0.5,
                                      params={"max_words": 4, "mode": "binary"})])
    completions = ["<answer>3 * 5 + 7</answer>", "<answer>3</answer> plus some words"]
    scores = scorer.score(["p", "p"], completions, [ROW, ROW])
    # countdown: 1 and 0.1 (well-formed, wrong); length_gate: 5 words > 4 → 0, 4 words → 1.
    assert scores.total.tolist() == pytest.approx([1.0 + 0.5 * 0.0, 0.1 + 0.5 * 1.0])
    assert set(scores.components) == {"countdown", "length_gate"}
    assert scores.passed == [True, False] and scores.disagreement is None
    assert scorer.required_fields == ("numbers", "target")


def test_prompt_text_of_chat_prompts():
    assert prompt_text("hi") == "hi"
    assert prompt_text([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]) \
        == "u"
    assert prompt_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}]) == "user: a\n\nassistant: b\n\nuser: c"


def test_countdown_and_minigrid_sources():
    short = load_prompt_source("countdown:n=5&seed=1&numbers=3&max_number=9&max_target=20"
                               "&style=short")
    assert len(short) == 5 and all(len(r["numbers"]) == 3 and r["target"] <= 20 for r in short)
    assert short[0]["prompt"][0]["role"] == "system"
    assert f"Target: {short[0]['target']}." in short[0]["prompt"][1]["content"]
    full = load_prompt_source("countdown:n=5&seed=1&numbers=3&max_number=9&max_target=20")
    assert isinstance(full[0]["prompt"], str) and [r["target"] for r in full] == \
        [r["target"] for r in short]
    grid = load_prompt_source("minigrid:env=MiniGrid-DoorKey-5x5-v0&seeds=0-1")
    assert grid and {"env_id", "seed", "step", "expert_subgoal"} <= set(grid[0])
    with pytest.raises(DataError, match="unknown parameter 'size'"):
        load_prompt_source("countdown:size=3")


def test_missing_reward_field_names_the_source_and_field():
    with pytest.raises(DataError) as info:
        check_reward_fields(("numbers", "target"), {"prompts.jsonl": [ROW, {"numbers": [1]}]})
    assert info.value.field == "target" and "prompts.jsonl" in str(info.value)
    assert "record 2" in str(info.value)


def test_registry_lookup_of_an_unknown_reward_lists_the_valid_ones():
    from prefalign.errors import ConfigError

    with pytest.raises(ConfigError, match="countdown"):
        build_reward("countdwn")
    assert "countdown" in REWARDS and isinstance(build_reward("countdown")(
        [""], ["<answer>3 * 5 + 7</answer>"], [ROW]), torch.Tensor)
