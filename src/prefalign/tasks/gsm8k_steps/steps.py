"""GSM8K worked solutions as steps, and the checker that finds the first unsound step.

A reference answer is lines of prose whose calculations carry calculator
annotations, ``Natalia sold 48/2 = <<48/2=24>>24 clips``, then ``#### 72``.
``parse_solution`` reads it into ``Step``s and the final answer, and
``render_solution`` writes it back. ``evaluate`` computes an annotation's
expression exactly, as a ``Fraction``, from a whitelist of ``ast`` nodes (never
``eval``).

``check_steps`` calls a step *sound* when

(a) every annotation's expression evaluates to its annotated result; a result
    written with d decimals may be the value rounded to d decimals (``10/3=3.33``);
(b) the number written right after each ``>>``, when there is one, is that
    annotation's result (or the result rounded to the decimals written);
(c) every operand of every expression is *grounded*: a number of the question
    (``question_values``: its numerals, ``n%`` also as n/100, and the number words
    of ``NUMBER_WORDS``), a result of an earlier annotation in the solution (the
    same line's earlier annotations count; its stated number too), or one of
    ``COMMON_CONSTANTS``;
(d) when ``reference_values`` are given, each annotation's result is one of them.

A line without an annotation computes nothing and is sound. Measured on the
GSM8K train file: 6,790 of the 7,378 references that carry annotations (92.0%;
95 more carry none) pass (a)-(c) at every step; of the first 500 rows, 451 of 489
(92.2%). Most of the rest compute a value in prose and use it unannotated.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from prefalign.errors import DataError
from prefalign.tasks.gsm8k import FINAL_MARKER, normalize_number

ANNOTATION = re.compile(r"<<([^<>]*)>>")
_STATED = re.compile(r"\$?(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)")
_NUMERAL = re.compile(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(\s*%| percent)?"
                      r"|(?<![\d.])\.\d+")
_LITERAL = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
MAX_EXPRESSION = 200
MAX_EXPONENT = 12

#: Numbers a solution may use without the question stating them: 0, small counts
#: (1-12), halves and quarters, one and a half, the units of money (0.01, 0.05,
#: 0.10, 0.25 dollars), of percent (100, 0.01) and of time and measure (15, 16, 24,
#: 52, 60, 365, 1000), and the multiples of 10 and 25 up to 100.
COMMON_CONSTANTS = frozenset(
    {Fraction(n) for n in range(0, 13)} | {Fraction(n) for n in range(10, 101, 10)}
    | {Fraction(n) for n in (15, 16, 24, 25, 52, 75, 365, 1000)}
    | {Fraction(n, 100) for n in (1, 5, 10, 25, 50)} | {Fraction(3, 2)})

_UNITS = "one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()

#: Words in a question that state a number (also with -s/-d/-ed/-th, and compounds
#: such as ``forty-five``).
NUMBER_WORDS: dict[str, tuple[Fraction, ...]] = {
    **{word: (Fraction(n),) for n, word in enumerate(_UNITS + _TEENS, start=1)},
    **{word: (Fraction(n),) for n, word in zip(range(20, 100, 10), _TENS)},
    "twice": (Fraction(2),), "double": (Fraction(2),), "triple": (Fraction(3),),
    "half": (Fraction(2), Fraction(1, 2)), "third": (Fraction(3),),
    "quarter": (Fraction(4),), "dozen": (Fraction(12),), "hundred": (Fraction(100),),
}
_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")(?:s|d|ed|th)?\b", re.IGNORECASE)
_COMPOUND = re.compile(rf"\b({'|'.join(_TENS)})[- ]({'|'.join(_UNITS)})\b", re.IGNORECASE)

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


class UncheckableSolution(DataError):
    """A solution whose steps carry no calculator annotation, so there is nothing to check
    (about 1% of GSM8K: algebra worked in prose)."""


@dataclass(frozen=True)
class Annotation:
    """One ``<<expression=result>>stated`` in a line, with its spans in the line."""

    expression: str
    result_text: str
    result: Fraction | None
    stated_text: str | None
    span: tuple[int, int]
    stated_span: tuple[int, int] | None


@dataclass(frozen=True)
class Step:
    """One line of a solution; its fields describe the line's last annotation."""

    text: str
    expression: str | None = None
    result: Fraction | None = None
    stated: Fraction | None = None

    @property
    def annotations(self) -> list[Annotation]:
        """Every annotation of the line, in order (read from ``text``)."""
        return annotations(self.text)


def _number(text: str) -> Fraction | None:
    return normalize_number(text.replace("%", ""))


def decimals(text: str) -> int:
    """How many decimals a written number has (``"3.33"`` → 2, ``"1,000"`` → 0)."""
    _, dot, fraction = text.strip().partition(".")
    return len(fraction.rstrip(".")) if dot else 0


def annotations(line: str) -> list[Annotation]:
    """The annotations of ``line``; the stated number is the one right after ``>>``."""
    found = []
    for match in ANNOTATION.finditer(line):
        expression, _, result_text = match.group(1).rpartition("=")
        stated = _STATED.match(line, match.end())
        found.append(Annotation(
            expression=expression.strip(), result_text=result_text.strip(),
            result=_number(result_text) if expression else None,
            stated_text=stated.group(1) if stated else None, span=match.span(),
            stated_span=stated.span(1) if stated else None))
    return found


def parse_step(line: str) -> Step:
    """``line`` as a ``Step`` described by its last annotation (all ``None`` without one)."""
    found = annotations(line)
    if not found:
        return Step(line)
    last = found[-1]
    stated = _number(last.stated_text) if last.stated_text is not None else None
    return Step(line, last.expression or None, last.result, stated)


def parse_solution(answer: str) -> tuple[list[Step], str]:
    """The steps (non-empty lines before the last ``####``) and the final answer text.

    A ``DataError`` (field ``answer``; the caller adds the file and line) when there
    is no ``####`` line or no step before it, and an ``UncheckableSolution`` (a
    ``DataError`` too) when no step carries an annotation.
    """
    if FINAL_MARKER not in answer:
        raise DataError(f"no final answer: the solution must end with '{FINAL_MARKER} "
                        "<answer>'", field="answer")
    body, final = answer.rsplit(FINAL_MARKER, 1)
    steps = [parse_step(line.strip()) for line in body.splitlines() if line.strip()]
    if not steps:
        raise DataError(f"no solution steps before '{FINAL_MARKER}'", field="answer")
    if not any(step.annotations for step in steps):
        raise UncheckableSolution("no step with a calculator annotation '<<a*b=c>>'",
                                  field="answer")
    return steps, final.strip()


def render_solution(steps: Iterable[Step], final: str) -> str:
    """The solution text: one line per step, then ``#### final``."""
    return "\n".join(step.text for step in steps) + f"\n{FINAL_MARKER} {final}"


def _tree(expression: str) -> tuple[ast.expr, str] | None:
    """The parsed expression and the cleaned text its offsets point into."""
    text = _LEADING_ZEROS.sub("", expression.replace("%", "").replace(",", "")).strip()
    if not text or len(text) > MAX_EXPRESSION or not text.isascii():
        return None
    try:
        return ast.parse(text, mode="eval").body, text
    except SyntaxError:
        return None


def _literal(node: ast.Constant, text: str) -> Fraction | None:
    written = text[node.col_offset:node.end_col_offset]
    return Fraction(written) if _LITERAL.fullmatch(written) else None


def _value(node: ast.expr, text: str) -> Fraction | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _literal(node, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand, text)
        return None if inner is None else -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, text), _value(node.right, text)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow) and (right.denominator != 1
                                             or abs(right) > MAX_EXPONENT):
            return None
        try:
            return _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            return None
    return None


def evaluate(expression: str) -> Fraction | None:
    """The exact value of an arithmetic expression, or ``None`` for anything else.

    Numbers, ``+ - * /``, ``**`` with an integer exponent of at most 12, a unary
    sign and parentheses; ``%`` signs and thousands commas are dropped first.
    Names, calls, attributes and every other construct give ``None``.
    """
    parsed = _tree(expression)
    return None if parsed is None else _value(*parsed)


def operands(expression: str) -> list[Fraction]:
    """The numbers written in an expression (signs dropped); empty when it does not parse."""
    parsed = _tree(expression)
    if parsed is None:
        return []
    node, text = parsed
    return [_literal(leaf, text) for leaf in ast.walk(node) if isinstance(leaf, ast.Constant)
            and type(leaf.value) in (int, float) and _literal(leaf, text) is not None]


def agrees(value: Fraction, written: str) -> bool:
    """True when ``written`` is ``value``, or ``value`` rounded to the decimals written."""
    number = _number(written)
    if number is None:
        return False
    return number == value or abs(value - number) * 2 * 10 ** decimals(written) <= 1


def question_values(question: str) -> set[Fraction]:
    """The numbers a question states: numerals (``n%`` also as n/100) and number words."""
    values = set()
    for match in _NUMERAL.finditer(question):
        number = normalize_number(match.group(0).replace("%", "").replace("percent", ""))
        if number is not None:
            values.add(number)
            if match.group(1):
                values.add(number / 100)
    for match in _WORD.finditer(question):
        values.update(NUMBER_WORDS[match.group(1).lower()])
    for match in _COMPOUND.finditer(question):
        tens, unit = (NUMBER_WORDS[word.lower()][0] for word in match.groups())
        values.add(tens + unit)
    return values


def annotation_values(annotation: Annotation) -> set[Fraction]:
    """What an annotation gives later steps: its result and its stated number."""
    stated = _number(annotation.stated_text) if annotation.stated_text is not None else None
    return {value for value in (annotation.result, stated) if value is not None}


def step_values(step: Step) -> set[Fraction]:
    """The values a step computes: each annotation's result and stated number."""
    return set().union(*(annotation_values(annotation) for annotation in step.annotations))


def reference_values(question: str, steps: Iterable[Step]) -> set[Fraction]:
    """Every value a reference solution computes, plus the question's numbers."""
    return question_values(question).union(*(step_values(step) for step in steps))


def _sound(annotation: Annotation, grounded: set[Fraction],
           allowed: set[Fraction] | None) -> bool:
    """Rules (a)-(d) of the module docstring for one annotation."""
    value = evaluate(annotation.expression)
    if value is None or annotation.result is None or not agrees(value, annotation.result_text):
        return False
    if annotation.stated_text is not None and not agrees(annotation.result,
                                                         annotation.stated_text):
        return False
    if not all(number in grounded for number in operands(annotation.expression)):
        return False
    return allowed is None or annotation.result in allowed


def check_steps(question: str, steps: list[Step],
                reference_values: set[Fraction] | None = None) -> list[bool]:
    """Whether each step is sound under rules (a)-(d) of the module docstring."""
    grounded = question_values(question) | COMMON_CONSTANTS
    verdicts = []
    for step in steps:
        sound = True
        for annotation in step.annotations:
            sound = _sound(annotation, grounded, reference_values) and sound
            grounded |= annotation_values(annotation)
        verdicts.append(sound)
    return verdicts


def first_wrong_step(question: str, steps: list[Step],
                     reference_values: set[Fraction] | None = None) -> int | None:
    """The index of the first unsound step, or ``None`` when every step is sound."""
    verdicts = check_steps(question, steps, reference_values)
    return next((index for index, sound in enumerate(verdicts) if not sound), None)
