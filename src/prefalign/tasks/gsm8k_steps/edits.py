"""Rewriting a solution's annotations: the tools the perturbations are made of.

``edit_annotation`` replaces one annotation's expression and/or result, the
number stated after it, and the copy of the expression written just before it
(``48/2 = <<48/2=24>>24``: the ``48/2 =`` part) when that copy has the same
numbers. ``cascade`` carries changed values through the later steps, so that
they compute correctly from the new values. ``slips`` proposes the wrong values
a careless solver writes: off by a little, a digit changed or two swapped.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from prefalign.tasks.gsm8k import normalize_number
from prefalign.tasks.gsm8k_steps.steps import Step, agrees, evaluate, parse_step

_NUMBER = re.compile(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\d.])\.\d+")
_OPERATOR = re.compile(r"(?<=[\d.)%])\s*(\*\*|[-+*/x×÷])")
_MIRROR = re.compile(r"[($.\d][\d$,.%()+\-*/x×÷ ]*=\s*\$?\s*$")
FLIPS = {"+": "-", "-": "+", "*": "/", "/": "*"}


def format_number(value: Fraction) -> str:
    """``value`` as written in a solution: ``24``, ``0.35``; other values to 2 decimals."""
    if value.denominator == 1:
        return str(value.numerator)
    if is_clean(value):
        return f"{float(value):.2f}".rstrip("0")
    return f"{float(value):.2f}"


def is_clean(value: Fraction) -> bool:
    """A value a grade-school solution writes exactly: non-negative, at most 2 decimals."""
    return value >= 0 and (value * 100).denominator == 1


def numbers(text: str) -> list[tuple[int, int, Fraction]]:
    """``(start, end, value)`` of each number written in ``text``, in order."""
    found = []
    for match in _NUMBER.finditer(text):
        value = normalize_number(match.group(0))
        if value is not None:
            found.append((match.start(), match.end(), value))
    return found


def operators(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, symbol)`` of each binary ``+ - * /`` (also ``x × ÷``) in ``text``."""
    return [(match.start(1), match.end(1), match.group(1))
            for match in _OPERATOR.finditer(text) if match.group(1) != "**"]


def substitute(expression: str, changes: dict[Fraction, Fraction]) -> str:
    """``expression`` with every number whose value is a key of ``changes`` replaced."""
    for start, end, value in reversed(numbers(expression)):
        if value in changes:
            expression = expression[:start] + format_number(changes[value]) + expression[end:]
    return expression


def _canonical(symbol: str) -> str:
    return {"x": "*", "×": "*", "÷": "/"}.get(symbol, symbol)


def _rewrite_mirror(segment: str, old: str, new: str) -> str:
    """``segment`` (text before an annotation) with its copy of ``old`` made a copy of ``new``.

    Unchanged unless the copy writes the same numbers and operators as ``old``.
    """
    match = _MIRROR.search(segment)
    if match is None:
        return segment
    copy = match.group(0)
    old_numbers, new_numbers = numbers(old), numbers(new)
    old_ops, new_ops, copy_ops = operators(old), operators(new), operators(copy)
    if ([v for *_, v in numbers(copy)] != [v for *_, v in old_numbers]
            or [_canonical(s) for *_, s in copy_ops] != [s for *_, s in old_ops]
            or len(new_numbers) != len(old_numbers) or len(new_ops) != len(old_ops)):
        return segment
    edits = [(s, e, format_number(n[2])) for (s, e, v), n in zip(numbers(copy), new_numbers)
             if v != n[2]]
    edits += [(s, e, n[2]) for (s, e, symbol), n in zip(copy_ops, new_ops)
              if _canonical(symbol) != n[2]]
    for start, end, text in sorted(edits, reverse=True):
        copy = copy[:start] + text + copy[end:]
    return segment[:match.start()] + copy


def edit_annotation(step: Step, index: int, *, expression: str | None = None,
                    result: Fraction | None = None) -> Step:
    """``step`` with annotation ``index`` given a new expression and/or result.

    A new result is also written as the stated number after ``>>``; a new
    expression also rewrites the copy of the old one written before ``<<``.
    """
    found = step.annotations
    annotation = found[index]
    text = step.text
    if result is not None and annotation.stated_span is not None:
        start, end = annotation.stated_span
        written = format_number(result)
        if "," in annotation.stated_text and result.denominator == 1:
            written = f"{result.numerator:,}"
        text = text[:start] + written + text[end:]
    new_expression = annotation.expression if expression is None else expression
    result_text = annotation.result_text if result is None else format_number(result)
    start, end = annotation.span
    text = text[:start] + f"<<{new_expression}={result_text}>>" + text[end:]
    if expression is not None:
        previous = found[index - 1] if index else None
        begin = 0 if previous is None else (previous.stated_span or previous.span)[1]
        text = (text[:begin] + _rewrite_mirror(text[begin:start], annotation.expression,
                                               expression) + text[start:])
    return parse_step(text)


def cascade(steps: list[Step], start: int,
            changes: dict[Fraction, Fraction]) -> list[Step] | None:
    """``steps[start:]`` recomputed with the values in ``changes`` replaced by their new ones.

    Each annotation using a changed value is rewritten and its new result joins
    ``changes``; ``None`` when a new result is not a clean value (see ``is_clean``)
    or one old value would need two new ones. ``changes`` is updated in place.
    """
    out = []
    for step in steps[start:]:
        for index in range(len(step.annotations)):
            annotation = step.annotations[index]
            if not any(value in changes for *_, value in numbers(annotation.expression)):
                continue
            expression = substitute(annotation.expression, changes)
            value = evaluate(expression)
            old = annotation.result
            if value is None or old is None or not is_clean(value):
                return None
            if value != old:
                if changes.get(old, value) != value:
                    return None
                changes[old] = value
            step = edit_annotation(step, index, expression=expression, result=value)
        out.append(step)
    return out


def slips(value: Fraction, rng: random.Random) -> list[Fraction]:
    """Wrong values for ``value`` in random order: off by 1 or 2 (or 10, from 10 up), a digit
    changed by one, or two neighbouring digits swapped; each clean, positive and not a
    rounding of ``value``."""
    text = format_number(value)
    deltas = (1, 2, 10) if abs(value) >= 10 else (1, 2)
    options = {value + sign * delta for delta in deltas for sign in (1, -1)}
    for index, char in enumerate(text):
        if not char.isdigit():
            continue
        for digit in {int(char) + 1, int(char) - 1} & set(range(10)):
            options.add(Fraction(text[:index] + str(digit) + text[index + 1:]))
        after = text[index + 1:index + 2]
        if after.isdigit() and after != char:
            options.add(Fraction(text[:index] + after + char + text[index + 2:]))
    found = sorted(option for option in options if option > 0 and is_clean(option)
                   and not agrees(value, format_number(option)))
    rng.shuffle(found)
    return found
