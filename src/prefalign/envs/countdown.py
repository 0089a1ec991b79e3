"""Countdown: reach a target number from given numbers with + - * /, verified exactly.

Problems are built backwards, so each has a known solution: draw 3 or 4
numbers, pick all of them or all but one in random order, combine them with a
random binary expression tree and random operators, and keep the result as
the target when every intermediate value is a non-negative integer (classic
Countdown rules) and the target is a positive integer up to ``max_target``,
not itself one of the numbers.

Answers are checked by ``verify`` with a hand-written recursive-descent parser
over this grammar (no ``eval``, no ``compile``, no ``ast``)::

    expression := term (("+" | "-") term)*
    term       := factor (("*" | "/") factor)*
    factor     := INTEGER | "(" expression ")"

``×``/``÷`` and the minus sign ``−`` are read as ``*``, ``/`` and ``-``.
Arithmetic is exact (``fractions.Fraction``), so 7 / 2 * 2 == 7. Each given
number may be used at most once (as a multiset); unary minus is refused.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from prefalign.errors import ConfigError

MAX_EXPRESSION_CHARS = 100
MAX_EXPRESSION_TOKENS = 20
OPERATORS = ("+", "-", "*", "/")
_OPERATOR_ALIASES = {"+": "+", "-": "-", "\u2212": "-", "*": "*", "\u00d7": "*", "/": "/",
                     "\u00f7": "/"}
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

PROMPT_TEMPLATE = (
    "Using the numbers {numbers}, each at most once, and the operations +, -, *, /, "
    "write an arithmetic expression equal to {target}. Parentheses are allowed; "
    "negative numbers are not. Give the expression inside <answer></answer>, "
    "for example <answer>(1 + 2) * 3</answer>."
)


def countdown_prompt(numbers: list[int], target: int) -> str:
    """The task statement for one problem; the answer goes inside <answer>…</answer>."""
    return PROMPT_TEMPLATE.format(numbers=", ".join(str(n) for n in numbers), target=target)


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
    if operator == "+":
        value = a + b
    elif operator == "-":
        value = a - b
    elif operator == "*":
        value = a * b
    elif b == 0:
        return None
    else:
        value = a / b
    if value < 0 or value.denominator != 1:
        return None
    wrap = (lambda text: f"({text})" if " " in text else text)
    return f"{wrap(left_text)} {operator} {wrap(right_text)}", value


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


def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>…</answer>`` in ``text`` (stripped), or ``None``."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


@dataclass(frozen=True)
class VerifyResult:
    """``correct`` only if the expression is valid and equals the target; ``well_formed``
    when it at least tokenizes and parses; ``reason`` says what was found."""

    correct: bool
    reason: str
    well_formed: bool = False


class _Malformed(Exception):
    pass


def _tokenize(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        char = expression[position]
        if char.isspace():
            position += 1
        elif char in "0123456789":
            end = position
            while end < len(expression) and expression[end] in "0123456789":
                end += 1
            tokens.append(expression[position:end])
            position = end
        elif char in _OPERATOR_ALIASES:
            tokens.append(_OPERATOR_ALIASES[char])
            position += 1
        elif char in "()":
            tokens.append(char)
            position += 1
        else:
            raise _Malformed(f"unexpected character {char!r} at position {position}")
    return tokens


class _Parser:
    """Recursive descent over the token list; builds Fraction values and records
    the integers used. Division by zero is recorded, not raised, so that a
    well-formed expression is told apart from a malformed one."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.position = tokens, 0
        self.used: list[int] = []
        self.divides_by_zero = False

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def parse(self) -> Fraction:
        if not self.tokens:
            raise _Malformed("empty expression")
        value = self._expression()
        if self._peek() is not None:
            raise _Malformed(f"unexpected {self._peek()!r} after a complete expression")
        return value

    def _expression(self) -> Fraction:
        value = self._term()
        while self._peek() in ("+", "-"):
            operator = self.tokens[self.position]
            self.position += 1
            right = self._term()
            value = value + right if operator == "+" else value - right
        return value

    def _term(self) -> Fraction:
        value = self._factor()
        while self._peek() in ("*", "/"):
            operator = self.tokens[self.position]
            self.position += 1
            right = self._factor()
            if operator == "*":
                value = value * right
            elif right == 0:
                self.divides_by_zero = True
                value = Fraction(0)
            else:
                value = value / right
        return value

    def _factor(self) -> Fraction:
        token = self._peek()
        if token is None:
            raise _Malformed("the expression ends where a number or '(' was expected")
        self.position += 1
        if token.isdigit():
            self.used.append(int(token))
            return Fraction(int(token))
        if token == "(":
            value = self._expression()
            if self._peek() != ")":
                raise _Malformed("missing ')'")
            self.position += 1
            return value
        if token in ("-", "+"):
            raise _Malformed(f"unary {'minus' if token == '-' else 'plus'} is not allowed")
        raise _Malformed(f"unexpected {token!r} where a number or '(' was expected")


def verify(expression: str, numbers: list[int], target: int) -> VerifyResult:
    """Check ``expression`` against a Countdown problem (see the module docstring).

    Refused, in this order: longer than 100 characters; a character outside
    digits, operators, parentheses and whitespace; more than 20 tokens; a parse
    error (including unary minus); a number not given or used more often than
    given; division by zero; a value other than ``target``.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        return VerifyResult(False, f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tokens = _tokenize(expression)
        if len(tokens) > MAX_EXPRESSION_TOKENS:
            return VerifyResult(False, f"expression has {len(tokens)} tokens; at most "
                                       f"{MAX_EXPRESSION_TOKENS} are allowed")
        parser = _Parser(tokens)
        value = parser.parse()
    except _Malformed as error:
        return VerifyResult(False, f"malformed expression: {error}")
    available, used = Counter(numbers), Counter(parser.used)
    for number, count in sorted(used.items()):
        if number not in available:
            return VerifyResult(False, f"uses {number}, which is not among the given numbers",
                                well_formed=True)
        if count > available[number]:
            return VerifyResult(False, f"uses the number {number} {count} times but it is "
                                       f"given {available[number]} time(s)", well_formed=True)
    if parser.divides_by_zero:
        return VerifyResult(False, "division by zero", well_formed=True)
    if value != target:
        return VerifyResult(False, f"evaluates to {value}, not {target}", well_formed=True)
    return VerifyResult(True, "correct", well_formed=True)


def countdown_reward(completion: str, numbers: list[int], target: int,
                     format_credit: float = 0.1) -> float:
    """1.0 for a correct answer; ``format_credit`` for an ``<answer>`` that parses but is
    wrong; 0.0 when there is no answer or it does not parse."""
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    result = verify(answer, numbers, target)
    if result.correct:
        return 1.0
    return format_credit if result.well_formed else 0.0
