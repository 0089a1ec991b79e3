"""The Countdown task: prompt and SFT records, content key, verifier, outcome shares.

Source: ``countdown:n=1000&seed=0&numbers=3&max_number=20&max_target=100&style=full``
(every key optional; ``style=short`` states the problem in one line, with the
rules and the answer format in the system message instead of the model's
default one).

Two problems are the same when they have the same numbers, in any order, and
the same target: the content key is the sorted numbers and the target, so a
permutation of a training problem never lands in a held-out set.
"""

from __future__ import annotations

import re
from collections import Counter

from prefalign.errors import ConfigError
from prefalign.tasks.base import Task, prompt_key
from prefalign.tasks.countdown.expression import OUTCOMES, extract_answer, verify
from prefalign.tasks.countdown.problems import countdown_short_prompt, generate_problems
from prefalign.tasks.registry import register_task

STYLES = ("full", "short")
_INTEGER = re.compile(r"\d+")


def prompt_records(n: int = 1000, seed: int = 0, numbers: int = 3, max_number: int = 20,
                   max_target: int = 100, style: str = "full") -> list[dict]:
    """``{"prompt", "numbers", "target", "solution"}`` problems in the given ``style``."""
    if style not in STYLES:
        raise ConfigError(f"style must be 'full' or 'short', got '{style}'")
    problems = generate_problems(n, seed, num_numbers=numbers, max_number=max_number,
                                 max_target=max_target)
    if style == "short":
        for problem in problems:
            problem["prompt"] = countdown_short_prompt(problem["numbers"], problem["target"])
    return problems


def sft_records(n: int = 1000, seed: int = 0, numbers: int = 3, max_number: int = 20,
                max_target: int = 100, style: str = "full") -> list[dict]:
    """The generator's own solution as the completion: ``<answer>solution</answer>``."""
    return [{**problem, "completion": f"<answer>{problem['solution']}</answer>"}
            for problem in prompt_records(n, seed, numbers, max_number, max_target, style)]


def content_key(record: dict) -> str:
    """The sorted numbers and the target (the prompt when the record has no numbers)."""
    if "numbers" not in record or "target" not in record:
        return prompt_key(record)
    return f"{sorted(int(n) for n in record['numbers'])} -> {int(record['target'])}"


def _check_credit(credit: float) -> None:
    if not 0.0 <= credit < 1.0:
        raise ValueError(f"format_credit must be in [0, 1), got {credit}")


class CountdownVerifier:
    """1 for an ``<answer>`` expression that follows the rules (each given number at
    most once, every intermediate a non-negative integer) and equals the target;
    else ``numbers_credit`` when it parses and uses only given numbers (each at most
    once); else ``format_credit`` when it at least parses; else 0."""

    name = "countdown"
    required_fields = ("numbers", "target")

    def __init__(self, format_credit: float = 0.1, numbers_credit: float | None = None):
        numbers_credit = format_credit if numbers_credit is None else numbers_credit
        _check_credit(format_credit)
        _check_credit(numbers_credit)
        self.format_credit, self.numbers_credit = format_credit, numbers_credit

    def score(self, completion: str, record: dict) -> float:
        numbers, target = [int(n) for n in record["numbers"]], int(record["target"])
        answer = extract_answer(completion)
        if answer is None:
            return 0.0
        result = verify(answer, numbers, target)
        if result.correct:
            return 1.0
        if not result.well_formed:
            return 0.0
        used = Counter(int(n) for n in _INTEGER.findall(answer))
        given = Counter(numbers)
        within = all(given[n] >= k for n, k in used.items())
        return self.numbers_credit if within else self.format_credit


def countdown_verifier(format_credit: float = 0.1,
                       numbers_credit: float | None = None) -> CountdownVerifier:
    """``CountdownVerifier(format_credit, numbers_credit)`` (``numbers_credit`` defaults to
    ``format_credit``: the plain Countdown reward)."""
    return CountdownVerifier(format_credit, numbers_credit)


def outcome_shares(records: list[dict], completions: list[str]) -> dict:
    """The share of completions per outcome: ``no_answer`` (no ``<answer>``) or the
    verifier's class (``correct``, ``malformed``, ``numbers``, ``rules``, ``value``)."""
    counts = dict.fromkeys(("no_answer", *OUTCOMES), 0)
    for record, completion in zip(records, completions):
        answer = extract_answer(completion)
        outcome = "no_answer" if answer is None else verify(
            answer, [int(n) for n in record["numbers"]], int(record["target"])).outcome
        counts[outcome] += 1
    total = max(len(completions), 1)
    return {f"outcome/{name}": count / total for name, count in counts.items()}


TASK = register_task(Task(
    name="countdown",
    makers={"prompt": prompt_records, "sft": sft_records},
    content_key=content_key,
    verifier=countdown_verifier,
    metrics=outcome_shares,
    description="reach a target from given numbers with + - * / (classic rules)",
))
