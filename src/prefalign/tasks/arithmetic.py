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
data on every machine, and different seeds give disjoint-by-prompt splits via
``prefalign.data.split``.
"""

from __future__ import annotations

import random
import re

INSTRUCTION = "Answer with the number only."
_INTEGER = re.compile(r"-?\d+")


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


def problems(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct problems as ``{"prompt","answer","a","op","b"}`` records."""
    rng = random.Random(f"arithmetic-{seed}")
    seen, out = set(), []
    while len(out) < n:
        a, op, b = _problem(rng)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        out.append({"prompt": prompt_text(a, op, b), "answer": _value(a, op, b),
                    "a": a, "op": op, "b": b})
    return out


def sft_records(n: int, seed: int = 0) -> list[dict]:
    return [{"prompt": p["prompt"], "completion": str(p["answer"])} for p in problems(n, seed)]


def preference_records(n: int, seed: int = 0, verbose_share: float = 0.5) -> list[dict]:
    """Pairs whose rejected reply is a wrong number or, with ``verbose_share``, verbose."""
    rng = random.Random(f"arithmetic-wrong-{seed}")
    records = []
    for p in problems(n, seed):
        a, op, b = p["a"], p["op"], p["b"]
        if rng.random() < verbose_share:
            rejected, kind = verbose_reply(a, op, b, rng), "verbose"
        else:
            rejected, kind = str(wrong_answer(a, op, b, rng)), "wrong_number"
        records.append({"prompt": p["prompt"], "chosen": str(p["answer"]), "rejected": rejected,
                        "answer": p["answer"], "metadata": {"perturbation": kind}})
    return records


def prompt_records(n: int, seed: int = 0) -> list[dict]:
    return [{"prompt": p["prompt"], "answer": p["answer"]} for p in problems(n, seed)]


def extract_answer(completion: str) -> int | None:
    """The first integer in the completion, or None."""
    match = _INTEGER.search(completion)
    return int(match.group()) if match else None


def verify(completion: str, answer: int) -> bool:
    """True when the completion's first integer is the exact answer."""
    return extract_answer(completion) == answer
