"""Countdown: problem generation, answer extraction, the exact verifier and the reward."""

from __future__ import annotations

import builtins
from fractions import Fraction

import pytest

from prefalign.errors import ConfigError
from prefalign.tasks.countdown import (
    CountdownVerifier,
    countdown_prompt,
    countdown_short_prompt,
    extract_answer,
    generate_problems,
    verify,
)


@pytest.mark.parametrize("expression, numbers, target", [
    ("1 + 2", [1, 2, 3], 3),
    ("(25 - 5) * 4", [25, 5, 4, 9], 80),
    ("100 / (7 - 3)", [100, 7, 3], 25),
    ("8 / 4 * 3", [8, 4, 3], 6),  # exact division
    ("5 - 5 + 2", [5, 5, 2], 2),  # an intermediate 0 is not negative
    ("((3))", [3, 4], 3),
    ("2 \u00d7 6 \u00f7 4 \u2212 1", [2, 6, 4, 1], 2),  # x, ÷ and the minus sign
    ("8-3-2", [8, 3, 2], 3),  # left associative: (8-3)-2
    ("2+3*4", [2, 3, 4], 14),  # precedence
    ("5 + 5", [5, 5, 1], 10),  # a number given twice may be used twice
])
def test_verify_accepts_correct(expression, numbers, target):
    result = verify(expression, numbers, target)
    assert result.correct and result.well_formed, result.reason


def test_verify_matches_independent_fraction_arithmetic():
    cases = [("(6 - 2) * (5 + 1)", [6, 2, 5, 1], Fraction((6 - 2) * (5 + 1))),
             ("12 / 4 * 6 - 9", [12, 4, 6, 9], Fraction(12, 4) * 6 - 9)]
    for expression, numbers, value in cases:
        assert value.denominator == 1
        assert verify(expression, numbers, int(value)).correct
        assert not verify(expression, numbers, int(value) + 1).correct


@pytest.mark.parametrize("expression, numbers, value, reason", [
    ("3 - 5 + 7", [3, 5, 7], 3 - 5 + 7, "negative"),  # (3 - 5) = -2 on the way to 5
    ("2 - 9 + 8 * 1", [2, 9, 8, 1], 2 - 9 + 8 * 1, "negative"),
    ("(1 - 4) * (2 - 5)", [1, 4, 2, 5], (1 - 4) * (2 - 5), "negative"),  # -3 * -3
    ("7 / 2 * 2", [7, 2, 2], Fraction(7, 2) * 2, "not a whole number"),
    ("9 / 4 + 3 / 4", [9, 4, 3, 4], Fraction(9, 4) + Fraction(3, 4), "not a whole number"),
    ("12 / 8 * 6", [12, 8, 6], Fraction(12, 8) * 6, "not a whole number"),
])
def test_verify_refuses_negative_and_fractional_intermediates(expression, numbers, value,
                                                              reason):
    """The prompt forbids negative numbers and inexact division: the value is the target,
    but a step breaks the rules, so the answer is well-formed and not correct."""
    target = int(value)
    assert value == target > 0
    result = verify(expression, numbers, target)
    assert not result.correct and result.well_formed
    assert reason in result.reason


def test_the_prompts_state_the_rules_the_verifier_enforces():
    full = countdown_prompt([3, 5, 7], 22)
    system = countdown_short_prompt([3, 5, 7], 22)[0]["content"]
    assert "negative" in full and "exact" in full and "whole number" in full
    assert "negative" in system and "fraction" in system


@pytest.mark.parametrize("expression, numbers, target, reason", [
    ("5 * 5", [5, 2], 25, "2 times"),
    ("3 + 3 + 3", [3, 3], 9, "3 times"),
    ("9 + 1", [1, 2, 3], 10, "not among the given numbers"),
    ("10", [1, 0], 10, "not among the given numbers"),  # digits are one number, not 1 and 0
    ("3 / (2 - 2)", [3, 2, 2], 0, "division by zero"),
    ("-1 + 3", [1, 3], 2, "unary minus"),
    ("3 + -1", [1, 3], 2, "unary minus"),
    ("+3", [3], 3, "unary plus"),
    ("(1 + 2", [1, 2], 3, "missing ')'"),
    ("1 + 2)", [1, 2], 3, "after a complete expression"),
    ("1 +", [1], 1, "ends where a number"),
    ("1 2", [1, 2], 12, "after a complete expression"),
    ("", [1], 1, "empty"),
    ("()", [1], 1, "unexpected ')'"),
    ("2 ** 3", [2, 3], 8, "unexpected '*'"),
    ("1.5 * 2", [1, 5, 2], 3, "unexpected character '.'"),
    ("1e3", [1, 3], 1000, "unexpected character 'e'"),
    ("2 ^ 3", [2, 3], 8, "unexpected character '^'"),
    ("1 + 2", [1, 2], 4, "evaluates to 3, not 4"),
])
def test_verify_rejects(expression, numbers, target, reason):
    result = verify(expression, numbers, target)
    assert not result.correct
    assert reason in result.reason


def test_verify_rejects_over_long_before_parsing():
    long_chars = "1" + " " * 100 + "+ 2"
    assert "longer than 100" in verify(long_chars, [1, 2], 3).reason
    many_tokens = "+".join(["1"] * 11)  # 21 tokens, 21 characters
    assert "21 tokens" in verify(many_tokens, [1] * 11, 11).reason
    assert verify("+".join(["1"] * 10), [1] * 10, 10).correct  # 19 tokens is fine


@pytest.mark.parametrize("payload", [
    "__import__('os')",
    "__import__('os').system('true')",
    "eval('1+2')",
    "(lambda: 3)()",
    "[3][0]",
    "1 if 1 else 2",
    "open('/etc/passwd')",
    "3;import os",
])
def test_code_is_rejected_and_never_evaluated(payload, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the verifier must not evaluate code")

    for name in ("eval", "exec", "compile", "__import__"):
        monkeypatch.setattr(builtins, name, refuse)
    result = verify(payload, [1, 2, 3], 3)
    monkeypatch.undo()
    assert not result.correct and not result.well_formed
    assert "malformed" in result.reason


def test_generator_is_deterministic_and_solutions_verify():
    assert generate_problems(50, seed=7) == generate_problems(50, seed=7)
    assert generate_problems(50, seed=7) != generate_problems(50, seed=8)
    for num_numbers, max_number in ((3, 20), (4, 100)):
        problems = generate_problems(300, seed=1, num_numbers=num_numbers, max_number=max_number,
                                     max_target=500)
        for problem in problems:
            assert set(problem) == {"prompt", "numbers", "target", "solution"}
            assert len(problem["numbers"]) == num_numbers
            assert all(1 <= n <= max_number for n in problem["numbers"])
            assert 1 <= problem["target"] <= 500 and problem["target"] not in problem["numbers"]
            assert str(problem["target"]) in problem["prompt"] and "<answer>" in problem["prompt"]
            assert verify(problem["solution"], problem["numbers"], problem["target"]).correct


def test_generator_rejects_bad_configuration():
    with pytest.raises(ConfigError):
        generate_problems(3, seed=0, num_numbers=5)


def test_extract_answer():
    assert extract_answer("think... <answer> 1 + 2 </answer>") == "1 + 2"
    assert extract_answer("<answer>1</answer> then <answer>(2 *\n3)</answer>") == "(2 *\n3)"
    assert extract_answer("no tags here") is None
    assert extract_answer("<answer>unclosed") is None


def test_countdown_reward():
    numbers, target = [3, 4, 5], 35
    row = {"numbers": numbers, "target": target}

    def reward(completion, **credit):
        return CountdownVerifier(**credit).score(completion, row)

    assert reward("<answer>(3 + 4) * 5</answer>") == 1.0
    assert reward("<answer>3 + 4 + 5</answer>") == pytest.approx(0.1)
    assert reward("<answer>3 * 9</answer>", format_credit=0.2) == 0.2
    assert reward("<answer>3 + </answer>") == 0.0
    assert reward("(3 + 4) * 5") == 0.0
    assert reward("<answer>__import__('os')</answer>") == 0.0
    # equal to the target over the given numbers, but 3 - 5 is negative: partial credit only
    rule_breaker = CountdownVerifier(numbers_credit=0.3)
    assert rule_breaker.score("<answer>3 - 5 + 7</answer>", {"numbers": [3, 5, 7],
                                                             "target": 5}) == pytest.approx(0.3)
