"""Countdown problems, built backwards so that each has a known solution.

Draw 3 or 4 numbers, pick all of them or all but one in random order, combine
them with a random binary expression tree and random operators, and keep the
result as the target when every intermediate value is a non-negative integer
(the rules the verifier enforces) and the target is a positive integer up to
``max_target``, not itself one of the numbers.
"""

from __future__ import annotations

import random
from fractions import Fraction

from prefalign.errors import ConfigError

OPERATORS = ("+", "-", "*", "/")
RULES = ("every intermediate result must be a whole number that is not negative "
         "(division only when it is exact)")

PROMPT_TEMPLATE = (
    "Using the numbers {numbers}, each at most once, and the operations +, -, *, /, "
    "write an arithmetic expression equal to {target}. Parentheses are allowed; "
    + RULES + ". Give the expression inside <answer></answer>, "
    "for example <answer>(1 + 2) * 3</answer>."
)
SHORT_SYSTEM = ("Combine the numbers with + - * / to reach the target, each number at most "
                "once; no step may give a negative number or a fraction. Reply as "
                "<answer>expression</answer>, e.g. <answer>(1 + 2) * 3</answer>.")


def countdown_prompt(numbers: list[int], target: int) -> str:
    """The task statement for one problem; the answer goes inside <answer>…</answer>."""
    return PROMPT_TEMPLATE.format(numbers=", ".join(str(n) for n in numbers), target=target)


def countdown_short_prompt(numbers: list[int], target: int) -> list[dict]:
    """A two-message prompt: the rules as the system message, the problem as the user's."""
    return [{"role": "system", "content": SHORT_SYSTEM},
            {"role": "user", "content": f"Numbers: {' '.join(map(str, numbers))}. "
                                        f"Target: {target}."}]


def _apply(operator: str, a: Fraction, b: Fraction) -> Fraction | None:
    """``a operator b`` when it is a non-negative integer, else ``None``."""
    if operator == "/" and b == 0:
        return None
    value = {"+": a + b, "-": a - b, "*": a * b}[operator] if operator != "/" else a / b
    return value if value >= 0 and value.denominator == 1 else None


def _wrap(text: str) -> str:
    """A compound sub-expression in parentheses, a single number as it is."""
    return f"({text})" if " " in text else text


def _random_expression(rng: random.Random, values: list[int]) -> tuple[str, Fraction] | None:
    """A random expression over ``values`` (each used once, in this order) with its
    value, or ``None`` when an intermediate is negative, fractional or divides by 0."""
    if len(values) == 1:
        return str(values[0]), Fraction(values[0])
    split = rng.randint(1, len(values) - 1)
    left, right = _random_expression(rng, values[:split]), _random_expression(rng, values[split:])
    if left is None or right is None:
        return None
    operator = rng.choice(OPERATORS)
    (left_text, a), (right_text, b) = left, right
    value = _apply(operator, a, b)
    if value is None:
        return None
    return f"{_wrap(left_text)} {operator} {_wrap(right_text)}", value


def generate_problems(n: int, seed: int, num_numbers: int = 4, max_number: int = 100,
                      max_target: int = 1000) -> list[dict]:
    """``n`` problems ``{"prompt", "numbers", "target", "solution"}``, deterministic by seed."""
    if num_numbers not in (3, 4):
        raise ConfigError(f"num_numbers must be 3 or 4, got {num_numbers}")
    if n < 0 or max_number < 2 or max_target < 1:
        raise ConfigError(f"need n >= 0, max_number >= 2, max_target >= 1; got n={n}, "
                          f"max_number={max_number}, max_target={max_target}")
    rng = random.Random(seed)
    problems: list[dict] = []
    while len(problems) < n:
        numbers = [rng.randint(1, max_number) for _ in range(num_numbers)]
        subset = rng.sample(numbers, rng.randint(num_numbers - 1, num_numbers))
        built = _random_expression(rng, subset)
        if built is None:
            continue
        solution, value = built
        target = int(value)
        if not 1 <= target <= max_target or target in numbers:
            continue
        problems.append({"prompt": countdown_prompt(numbers, target), "numbers": numbers,
                         "target": target, "solution": solution})
    return problems
