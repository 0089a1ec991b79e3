"""Offline stages (SFT, preference) hold out content-disjoint problems: the split and the
leakage check use the training source's task content key, so ``a + b`` and ``b + a`` never
land on both sides."""

from __future__ import annotations

import json
import re

import pytest

from prefalign.config import DataConfig
from prefalign.errors import DataError
from prefalign.stages.common import load_train_eval

SOURCE = "builtin:arithmetic?n=2000&seed=0"
PROBLEM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")


def problem(record: dict) -> tuple:
    """Written out here: a sum is the same problem in either order, a difference is not."""
    a, op, b = PROBLEM.search(record["prompt"]).groups()
    a, b = int(a), int(b)
    return (min(a, b), op, max(a, b)) if op == "+" else (a, op, b)


def ordered(record: dict) -> tuple:
    a, op, b = PROBLEM.search(record["prompt"]).groups()
    return int(a), op, int(b)


@pytest.mark.parametrize("kind", ["sft", "preference"])
def test_held_out_split_shares_no_problem_with_training(kind):
    data = DataConfig(train=SOURCE, eval_fraction=0.2)
    train, held_out = load_train_eval(data, kind, seed=0)
    assert len(held_out) > 200 and len(train) + len(held_out) == 2000
    # the source does hold both orders of some sums, so the check has something to catch
    everything = [ordered(r) for r in train + held_out]
    assert sum((b, "+", a) in set(everything) for a, op, b in everything if op == "+" and a != b)
    assert not {problem(r) for r in train} & {problem(r) for r in held_out}


@pytest.mark.parametrize("kind", ["sft", "preference"])
def test_eval_file_with_a_training_problem_reordered_is_refused(tmp_path, kind):
    train, _ = load_train_eval(DataConfig(train=SOURCE, eval_fraction=0.0), kind, seed=0)
    a, op, b = next(ordered(r) for r in train if ordered(r)[1] == "+"
                    and (ordered(r)[2], "+", ordered(r)[0]) not in {ordered(t) for t in train})
    swapped = {**train[0], "prompt": train[0]["prompt"].replace(
        PROBLEM.search(train[0]["prompt"]).group(0), f"What is {b} + {a}?")}
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps(swapped) + "\n")
    with pytest.raises(DataError):
        load_train_eval(DataConfig(train=SOURCE, eval=str(eval_file)), kind, seed=0)


def test_a_file_already_split_with_the_same_seed_still_gives_a_held_out_share(tmp_path):
    # `prefalign data split --seed 0` keeps in train.jsonl only prompts hashing below 0.8;
    # an unsalted in-stage split with seed 0 would put every one of them on the train side.
    from prefalign.data.split import split_records
    from prefalign.stages.online.prompts import load_prompt_sets

    rows = [{"prompt": f"question {i}", "chosen": "yes", "rejected": "no"} for i in range(2000)]
    first = split_records(rows, {"train": 0.8, "eval": 0.2}, seed=0)["train"]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in first))
    data = DataConfig(train=str(path), eval_fraction=0.1)
    train, held_out = load_train_eval(data, "preference", seed=0)
    assert 0.07 < len(held_out) / len(first) < 0.13 and len(train) + len(held_out) == len(first)
    prompts, held_prompts = load_prompt_sets(data, seed=0)
    assert 0.07 < len(held_prompts) / len(first) < 0.13
    assert not {r["prompt"] for r in prompts} & {r["prompt"] for r in held_prompts}
