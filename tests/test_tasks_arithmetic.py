"""The built-in arithmetic task: its fixed test split and the builtin: source parameters."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from prefalign.errors import DataError
from prefalign.tasks import arithmetic, load_source


def _is_test_prompt(prompt: str) -> bool:
    """A problem is in the test split when its canonical prompt (a sum written smaller
    operand first) hashes below 0.1 with seed 0."""
    a, op, b = re.match(r"What is (\d+) ([+-]) (\d+)\?", prompt).groups()
    if op == "+":
        a, b = sorted((a, b), key=int)
    canonical = f"What is {a} {op} {b}? Answer with the number only."
    digest = hashlib.sha256(f"0\x00{canonical}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < 0.1


def test_train_and_test_splits_partition_the_problem_space():
    train, test = arithmetic.split_size("train"), arithmetic.split_size("test")
    assert train + test == arithmetic.split_size("all") == 90 * 90 * 2
    assert 0.08 < test / (train + test) < 0.12
    test_prompts = {p["prompt"] for p in arithmetic.problems(600, seed=3, split="test")}
    train_prompts = {p["prompt"] for p in arithmetic.problems(3000, seed=3, split="train")}
    assert len(test_prompts) == 600 and len(train_prompts) == 3000
    assert not test_prompts & train_prompts
    assert all(_is_test_prompt(p) for p in test_prompts)
    assert not any(_is_test_prompt(p) for p in train_prompts)


def test_the_whole_space_keeps_the_seeded_draw_order():
    rng, expected, seen = random.Random("arithmetic-5"), [], set()
    while len(expected) < 40:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        op = rng.choice("+-")
        if (a, op, b) not in seen:
            seen.add((a, op, b))
            expected.append((a, op, b, a + b if op == "+" else a - b))
    got = [(p["a"], p["op"], p["b"], p["answer"]) for p in arithmetic.problems(40, seed=5)]
    assert got == expected


def test_builtin_source_parameters_reach_the_task():
    pairs = load_source("builtin:arithmetic?n=200&seed=1&split=test&verbose_share=0", "preference")
    assert len(pairs) == 200
    assert {r["metadata"]["perturbation"] for r in pairs} == {"wrong_number"}
    assert all(_is_test_prompt(r["prompt"]) for r in pairs)
    for r in pairs:
        a, op, b = re.match(r"What is (\d+) ([+-]) (\d+)\?", r["prompt"]).groups()
        right = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert int(r["chosen"]) == right != int(r["rejected"])
    verbose = load_source("builtin:arithmetic?n=200&seed=1&verbose_share=1.0", "preference")
    assert {r["metadata"]["perturbation"] for r in verbose} == {"verbose"}


@pytest.mark.parametrize("query, message", [
    ("n=5000&split=test", "n=5000 problems asked for; the 'test' split has"),
    ("n=10&split=dev", "unknown split 'dev'"),
    ("n=10&verbose_share=lots", "parameter 'verbose_share' must be a number, got 'lots'"),
    ("n=10&verbose_share=1.5", "verbose_share must be in [0, 1], got 1.5"),
    ("n=ten", "parameter 'n' must be an integer, got 'ten'"),
    ("n=10&size=3", "unknown parameter 'size'; valid: n, seed, split, verbose_share"),
])
def test_bad_builtin_parameters_name_the_source(query, message):
    source = f"builtin:arithmetic?{query}"
    with pytest.raises(DataError) as error:
        load_source(source, "preference")
    assert str(error.value).startswith(f"{source}: ")
    assert message in str(error.value)
