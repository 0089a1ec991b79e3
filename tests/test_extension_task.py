"""A new task defined in this file alone — no edit of the package — registered, loaded
through a source string, split content-disjointly, and trained on end to end by a
short online GRPO run whose reward is the task's verifier."""

from __future__ import annotations

import math
import random

import pytest

from prefalign.cli.online import load_online_config
from prefalign.config.sections import DataConfig
from prefalign.engine.metrics import read_metrics
from prefalign.errors import DataError
from prefalign.rewards import available_rewards, build_reward
from prefalign.stages.online import run_online
from prefalign.stages.online.prompts import load_prompt_sets
from prefalign.tasks import TASKS, Task, get_task, load_source, register_task

PHRASINGS = ("Is {n} even or odd? Answer with one word.", "Parity of {n}: even or odd?")


def parity_prompts(n: int = 20, seed: int = 0, phrasings: int = 2) -> list[dict]:
    """``n`` numbers, each asked in ``phrasings`` wordings: the same problem twice."""
    rng = random.Random(seed)
    numbers = rng.sample(range(100, 1000), n)
    return [{"prompt": PHRASINGS[k].format(n=number), "number": number,
             "answer": "even" if number % 2 == 0 else "odd"}
            for number in numbers for k in range(phrasings)]


def parity_key(record: dict) -> str:
    return str(record["number"])


class ParityVerifier:
    name = "parity"
    required_fields = ("answer",)

    def __init__(self, wrong_word_credit: float = 0.0):
        self.wrong_word_credit = wrong_word_credit

    def score(self, completion: str, record: dict) -> float:
        words = completion.strip().lower().split()
        if not words:
            return 0.0
        if words[0].strip(".!") == record["answer"]:
            return 1.0
        return self.wrong_word_credit if words[0].strip(".!") in ("even", "odd") else 0.0


PARITY = Task(name="parity", makers={"prompt": parity_prompts}, content_key=parity_key,
              verifier=ParityVerifier, description="say whether a number is even or odd")


@pytest.fixture(scope="module", autouse=True)
def parity_task():
    register_task(PARITY)
    yield PARITY


def test_the_task_is_registered_and_loads_from_a_source_string():
    assert get_task("parity") is PARITY and "parity" in TASKS
    records = load_source("parity:n=6&seed=3", "prompt")
    assert records == parity_prompts(6, 3)
    assert load_source("builtin:parity?n=6&seed=3&phrasings=1", "prompt") == \
        parity_prompts(6, 3, 1)
    with pytest.raises(DataError, match="'n' must be an integer"):
        load_source("parity:n=six", "prompt")
    with pytest.raises(DataError, match="no sft records"):
        load_source("parity:n=6", "sft")


def test_its_verifier_is_a_reward_with_its_parameters():
    assert "parity" in available_rewards()
    reward = build_reward("parity", wrong_word_credit=0.25)
    rows = [{"answer": "even"}] * 3
    assert reward([""] * 3, ["Even.", "odd", "seven"], rows).tolist() == [1.0, 0.25, 0.0]
    assert reward.passed([""] * 3, ["Even.", "odd", "seven"], rows) == [True, False, False]


def test_its_held_out_numbers_never_occur_in_training_in_another_wording():
    train, held_out = load_prompt_sets(DataConfig(train="parity:n=60&seed=1",
                                                  eval_fraction=0.3), 0)
    assert held_out and len(train) + len(held_out) == 120
    assert not {r["number"] for r in train} & {r["number"] for r in held_out}


def test_a_short_grpo_run_trains_on_it_with_its_verifier_as_the_reward(tiny_model_dir,
                                                                       tmp_path):
    """Every response starts with "even": the verifier gives 1 on an even number and,
    with ``wrong_word_credit=0.5``, 0.5 on an odd one; only the 1s pass. So each
    rollout's mean reward is 0.5 + pass_rate / 2 — the random model's own tokens
    cannot change either."""
    cfg = load_online_config("grpo", None, [
        f"model.name={tiny_model_dir}", "data.train=parity:n=12&seed=0",
        "data.eval_fraction=0.25", "rewards=[{name: parity, params: {wrong_word_credit: 0.5}}]",
        "rollout.response_prefix='even '", "rollout.max_new_tokens=3",
        "rollout.prompts_per_rollout=2", "rollout.num_samples=2", "train.batch_size=2",
        "train.grad_accum=2", "train.max_steps=3", "train.eval_every=3", "eval.prompts=3",
        "eval.batch_size=8", f"output_dir={tmp_path}", "name=parity",
        "hacking.warmup_rollouts=1", "model.lora.r=4"])
    result = run_online(cfg)
    assert result.step == 3 and math.isfinite(result.last_metrics["loss"])
    rollouts = read_metrics(cfg.run_dir / "rollouts.jsonl")
    assert len(rollouts) == 3
    for row in rollouts:
        assert row["rollout/pass_rate"] in (0.0, 0.5, 1.0)
        assert row["reward/mean"] == pytest.approx(0.5 + row["rollout/pass_rate"] / 2)
    evaluations = [row for row in read_metrics(cfg.run_dir / "metrics.jsonl")
                   if "eval/pass_rate" in row]
    assert [row["step"] for row in evaluations] == [0, 3]
    assert all(row["eval/pass_rate"] in (0.0, 1 / 3, 2 / 3, 1.0) for row in evaluations)
