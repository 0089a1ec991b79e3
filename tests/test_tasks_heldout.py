"""Held-out prompts are content-disjoint from training, for every task.

Each test builds the held-out set the way an online stage does
(``load_prompt_sets``: a split of the training source by ``data.eval_fraction``,
or a fixed test split) on generated data, and checks it with an identity of
"the same problem" written out here, independently of the task's content key:

* Countdown — the multiset of numbers and the target (the order of the numbers
  in the prompt does not matter);
* MiniGrid — the state text, word for word;
* arithmetic — the operation and its operands, in either order for a sum;
* GSM8K — the question, ignoring case and spacing.

Splitting by prompt text or by episode (the code before tasks had content keys)
fails each of them: in the shipped Countdown GRPO example 49 of the 64
evaluated prompts were a training problem with its numbers permuted, and for
DoorKey-5x5, seeds 0–99, 39 of 42 held-out MiniGrid prompts occurred in
training.
"""

from __future__ import annotations

import json
import re

import pytest

from prefalign.config.sections import DataConfig
from prefalign.errors import DataError
from prefalign.stages.online.prompts import load_prompt_sets
from prefalign.tasks import load_source

COUNTDOWN = "countdown:n=3000&seed=0&numbers=3&max_number=9&max_target=20&style=short"


def _shared(train: list[dict], held_out: list[dict], same) -> list[dict]:
    seen = {same(record) for record in train}
    return [record for record in held_out if same(record) in seen]


def test_countdown_held_out_problems_are_not_permuted_training_problems():
    train, held_out = load_prompt_sets(DataConfig(train=COUNTDOWN, eval_fraction=0.05), 0)
    assert len(held_out) >= 64 and len(train) + len(held_out) == 3000

    def same(record):
        return tuple(sorted(record["numbers"])), record["target"]

    assert _shared(train, held_out[:64], same) == []  # the prompts the GRPO example evaluates
    assert _shared(train, held_out, same) == []
    with pytest.raises(DataError, match="more than one split"):
        load_prompt_sets(DataConfig(train=COUNTDOWN, eval=COUNTDOWN.replace("seed=0",
                                                                            "seed=1")), 0)


def test_minigrid_held_out_states_do_not_occur_in_training():
    source = "minigrid:env=MiniGrid-DoorKey-5x5-v0&seeds=0-99"
    train, held_out = load_prompt_sets(DataConfig(train=source, eval_fraction=0.2), 0)
    assert held_out and all({"env_id", "seed", "step"} <= set(r) for r in held_out)
    assert _shared(train, held_out, lambda record: record["prompt"]) == []


def _arithmetic_problem(record: dict) -> tuple:
    a, op, b = re.match(r"What is (\d+) ([+-]) (\d+)\?", record["prompt"]).groups()
    return (op, *sorted((int(a), int(b)))) if op == "+" else (op, int(a), int(b))


def test_arithmetic_held_out_problems_differ_from_training_in_either_order():
    train, held_out = load_prompt_sets(
        DataConfig(train="builtin:arithmetic?n=4000&seed=0", eval_fraction=0.2), 0)
    assert held_out and _shared(train, held_out, _arithmetic_problem) == []
    fixed_train = load_source("builtin:arithmetic?n=8000&seed=0&split=train", "prompt")
    fixed_test = load_source("builtin:arithmetic?n=1000&seed=0&split=test", "prompt")
    assert _shared(fixed_train, fixed_test, _arithmetic_problem) == []


def test_gsm8k_held_out_questions_differ_from_training_beyond_case_and_spacing(tmp_path):
    rows = []
    for index in range(60):
        question = f"Ann has {index} apples and buys {index + 2} more. How many apples now?"
        respaced = "  " + question.upper().replace(" ", "   ") + "\n"
        for text in (question, respaced):
            rows.append({"question": text, "answer": f"She has {2 * index + 2}.\n"
                                                     f"#### {2 * index + 2}"})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    train, held_out = load_prompt_sets(DataConfig(train=str(path), eval_fraction=0.3), 0)
    assert held_out and len(train) + len(held_out) == 120

    def same(record):
        return " ".join(record["prompt"].lower().split())

    assert _shared(train, held_out, same) == []
