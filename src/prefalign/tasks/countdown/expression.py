"""Countdown answers, checked exactly by a hand-written parser (no ``eval``).

A recursive-descent parser over this grammar (no ``eval``, no ``compile``, no
``ast``)::

    expression := term (("+" | "-") term)*
    term       := factor (("*" | "/") factor)*
    factor     := INTEGER | "(" expression ")"

``×``/``÷`` and the minus sign ``−`` are read as ``*``, ``/`` and ``-``.
Arithmetic is exact (``fractions.Fraction``). The rules are the classic
Countdown rules, the ones the problems are generated with and the prompt
states: each given number is used at most once (as a multiset), unary minus is
refused, and every intermediate value — each ``+ - * /`` in evaluation order,
left to right within a sum or a product — must be a non-negative integer. So
``7 - 9 + 4`` is refused (7 − 9 < 0) although it equals 2, and so is
``7 / 2 * 2`` (7 / 2 is not a whole number) although it equals 7.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPRESSION_CHARS = 100
MAX_EXPRESSION_TOKENS = 20
_OPERATOR_ALIASES = {"+": "+", "-": "-", "\u2212": "-", "*": "*", "\u00d7": "*", "/": "/",
                     "\u00f7": "/"}
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>…</answer>`` in ``text`` (stripped), or ``None``."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


OUTCOMES = ("correct", "malformed", "numbers", "rules", "value")


@dataclass(frozen=True)
class VerifyResult:
    """``correct`` only if the expression is valid and equals the target; ``well_formed``
    when it at least tokenizes and parses; ``reason`` says what was found; ``outcome``
    is its class: ``correct``, ``malformed`` (too long, or does not parse), ``numbers``
    (a number not given or used too often), ``rules`` (division by zero, a negative or
    fractional intermediate) or ``value`` (a valid expression, another value)."""

    correct: bool
    reason: str
    well_formed: bool = False
    outcome: str = "malformed"


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
    the integers used. A broken rule (division by zero, a negative or fractional
    intermediate) is recorded, not raised, so that a well-formed expression is told
    apart from a malformed one; the first one found is kept in ``violation``."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.position = tokens, 0
        self.used: list[int] = []
        self.violation: str | None = None

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def parse(self) -> Fraction:
        if not self.tokens:
            raise _Malformed("empty expression")
        value = self._expression()
        if self._peek() is not None:
            raise _Malformed(f"unexpected {self._peek()!r} after a complete expression")
        return value

    def _apply(self, operator: str, left: Fraction, right: Fraction) -> Fraction:
        """``left operator right``, recording the first broken rule."""
        if operator == "/" and right == 0:
            self.violation = self.violation or "division by zero"
            return Fraction(0)
        if operator == "+":
            value = left + right
        elif operator == "-":
            value = left - right
        else:
            value = left * right if operator == "*" else left / right
        if value < 0:
            self.violation = self.violation or (
                f"{left} - {right} = {value} is negative; every intermediate result must be "
                "a non-negative whole number")
        elif value.denominator != 1:
            self.violation = self.violation or (
                f"{left} / {right} is not a whole number; division must be exact")
        return value

    def _expression(self) -> Fraction:
        value = self._term()
        while self._peek() in ("+", "-"):
            operator = self.tokens[self.position]
            self.position += 1
            value = self._apply(operator, value, self._term())
        return value

    def _term(self) -> Fraction:
        value = self._factor()
        while self._peek() in ("*", "/"):
            operator = self.tokens[self.position]
            self.position += 1
            value = self._apply(operator, value, self._factor())
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
    given; division by zero, a negative intermediate or an inexact division (the
    first in evaluation order); a value other than ``target``.
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
                                well_formed=True, outcome="numbers")
        if count > available[number]:
            return VerifyResult(False, f"uses the number {number} {count} times but it is "
                                       f"given {available[number]} time(s)", well_formed=True,
                                outcome="numbers")
    if parser.violation is not None:
        return VerifyResult(False, parser.violation, well_formed=True, outcome="rules")
    if value != target:
        return VerifyResult(False, f"evaluates to {value}, not {target}", well_formed=True,
                            outcome="value")
    return VerifyResult(True, "correct", well_formed=True, outcome="correct")
