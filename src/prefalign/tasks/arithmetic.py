"""Two-digit arithmetic: a built-in task whose answers are checked, not guessed.

Each problem is ``a ∘ b`` with two-digit ``a, b`` and ``∘ ∈ {+, −}``. The
prompt asks for the number only; the verifier extracts the first integer of a
completion and compares it with the exact result, so a reply passes only when
it is correct *and* follows the format. Preference pairs take the bare correct
answer as ``chosen``; ``rejected`` breaks one of the two rules: a plausible
wrong number (a carry or borrow slip, off by one, the other operation) or a
verbose reply in the style instruction-tuned models fall into ("To solve this,
we need to ..."), recorded in ``metadata.perturbation``. A policy's improvement
is measured by generating and checking, not only by the loss.

Problems are a pure function of (seed, index): the same seed gives the same
data on every machine. There are only 90·90·2 = 16,200 problems, so sets drawn
with different seeds overlap; a fixed test split keeps them apart instead:
``split="test"`` draws only from the ~10% of problems whose content key hashes
below ``TEST_SHARE`` (``prefalign.data.split.unit_hash`` with seed 0),
``split="train"`` only from the rest, and ``split="all"`` from every problem.

The content key says when two problems are the same: ``a + b`` and ``b + a`` are
(addition commutes, the answer and every slip are the same), ``a − b`` and
``b − a`` are not. Both orders of a sum therefore fall in the same split.
Source: ``builtin:arithmetic?n=600&seed=0&split=train`` (also ``arithmetic:...``).
"""

from __future__ import annotations

import functools
import random
import re

from prefalign.data.split import unit_hash
from prefalign.tasks.base import Task, prompt_key
from prefalign.tasks.registry import register_task

INSTRUCTION = "Answer with the number only."
_INTEGER = re.compile(r"-?\d+")
_PROBLEM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")
TEST_SHARE = 0.1
SPLITS = ("all", "train", "test")
DEFAULT_SIZE = 600


def _problem(rng: random.Random) -> tuple[int, str, int]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    op = rng.choice("+-")
    return a, op, b


def _value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


def prompt_text(a: int, op: str, b: int) -> str:
    return f"What is {a} {op} {b}? {INSTRUCTION}"


def wrong_answer(a: int, op: str, b: int, rng: random.Random) -> int:
    """A plausible mistake: carry/borrow slips, off by one, or the other operation."""
    right = _value(a, op, b)
    other = _value(a, "-" if op == "+" else "+", b)
    candidates = [right + 10, right - 10, right + 1, right - 1, other]
    return rng.choice([c for c in candidates if c != right])


VERBOSE_TEMPLATES = (
    "To solve this, we need to {verb} {b} {prep} {a}.",
    "{a} {op} {b} = {wrong}",
    "Sure! {a} {op} {b} is {wrong}.",
    "The answer is {wrong}.",
)


def verbose_reply(a: int, op: str, b: int, rng: random.Random) -> str:
    """A reply that ignores "number only": it never starts with the right number."""
    template = rng.choice(VERBOSE_TEMPLATES)
    verb, prep = ("add", "to") if op == "+" else ("subtract", "from")
    return template.format(a=a, b=b, op=op, verb=verb, prep=prep,
                           wrong=wrong_answer(a, op, b, rng))


def problem_key(a: int, op: str, b: int) -> str:
    """The content key of ``a op b``: the prompt of its canonical order (``min + max``
    for a sum, as written for a difference)."""
    if op == "+":
        a, b = min(a, b), max(a, b)
    return prompt_text(a, op, b)


def content_key(record: dict) -> str:
    """A record's problem key, read from its prompt (any record kind); a prompt that is
    not an arithmetic problem is its own key."""
    prompt = record["prompt"]
    match = _PROBLEM.search(prompt) if isinstance(prompt, str) else None
    if match is None:
        return prompt_key(record)
    return problem_key(int(match.group(1)), match.group(2), int(match.group(3)))


def in_split(a: int, op: str, b: int, split: str) -> bool:
    """Whether problem ``a op b`` belongs to ``split`` ("all", "train" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "all":
        return True
    return (unit_hash(problem_key(a, op, b), 0) < TEST_SHARE) == (split == "test")


@functools.cache
def split_size(split: str) -> int:
    """How many distinct problems ``split`` holds."""
    return sum(in_split(a, op, b, split)
               for a in range(10, 100) for b in range(10, 100) for op in "+-")


def problems(n: int = DEFAULT_SIZE, seed: int = 0, split: str = "all") -> list[dict]:
    """``n`` distinct problems of ``split`` as ``{"prompt","answer","a","op","b"}`` records."""
    available = split_size(split)
    if not 0 <= n <= available:
        raise ValueError(f"n={n} problems asked for; the {split!r} split has {available}")
    rng = random.Random(f"arithmetic-{seed}")
    seen, out = set(), []
    while len(out) < n:
        a, op, b = _problem(rng)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        if in_split(a, op, b, split):
            out.append({"prompt": prompt_text(a, op, b), "answer": _value(a, op, b),
                        "a": a, "op": op, "b": b})
    return out


def sft_records(n: int = DEFAULT_SIZE, seed: int = 0, split: str = "all") -> list[dict]:
    return [{"prompt": p["prompt"], "completion": str(p["answer"])}
            for p in problems(n, seed, split)]


def preference_records(n: int = DEFAULT_SIZE, seed: int = 0, split: str = "all",
                       verbose_share: float = 0.5) -> list[dict]:
    """Pairs whose rejected reply is a wrong number or, with ``verbose_share``, verbose."""
    if not 0.0 <= verbose_share <= 1.0:
        raise ValueError(f"verbose_share must be in [0, 1], got {verbose_share}")
    rng = random.Random(f"arithmetic-wrong-{seed}")
    records = []
    for p in problems(n, seed, split):
        a, op, b = p["a"], p["op"], p["b"]
        if rng.random() < verbose_share:
            rejected, kind = verbose_reply(a, op, b, rng), "verbose"
        else:
            rejected, kind = str(wrong_answer(a, op, b, rng)), "wrong_number"
        records.append({"prompt": p["prompt"], "chosen": str(p["answer"]), "rejected": rejected,
                        "answer": p["answer"],
                        "metadata": {"perturbation": kind, "answer": p["answer"]}})
    return records


def prompt_records(n: int = DEFAULT_SIZE, seed: int = 0, split: str = "all") -> list[dict]:
    return [{"prompt": p["prompt"], "answer": p["answer"]} for p in problems(n, seed, split)]


def extract_answer(completion: str) -> int | None:
    """The first integer in the completion, or None."""
    match = _INTEGER.search(completion)
    return int(match.group()) if match else None


def verify(completion: str, answer: int) -> bool:
    """True when the completion's first integer is the exact answer."""
    return extract_answer(completion) == answer


class ArithmeticVerifier:
    """Two-digit arithmetic: 1 when the first integer of the completion is ``answer``
    (``answer`` read from the record, or ``chosen`` for a preference pair)."""

    name = "arithmetic"
    required_fields = ("answer",)

    def score(self, completion: str, record: dict) -> float:
        answer = record["answer"] if "answer" in record else record["chosen"]
        return 1.0 if verify(completion, int(answer)) else 0.0


def arithmetic_verifier() -> ArithmeticVerifier:
    """``ArithmeticVerifier()``: 1 for the exact answer as the first integer, else 0."""
    return ArithmeticVerifier()


TASK = register_task(Task(
    name="arithmetic",
    makers={"sft": sft_records, "preference": preference_records, "prompt": prompt_records},
    content_key=content_key,
    verifier=arithmetic_verifier,
    description="two-digit + and -, answer with the number only",
))
