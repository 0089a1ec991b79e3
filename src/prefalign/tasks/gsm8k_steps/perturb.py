"""Perturbations of a reference solution, each with a known first wrong step.

Every perturbation takes the question, the reference ``Step``s, the final answer
and a ``random.Random``, and returns a ``Perturbed`` solution, or ``None`` when
the solution does not admit it. The first wrong step is the one ``first_wrong_step``
finds when given the reference's values (``reference_values``):

* ``wrong_result`` — a step's result slips (off by one, two or ten, a digit
  changed or swapped); the later steps compute correctly from the slipped value,
  so the final answer changes and the one arithmetic error is the slip (rule a);
* ``wrong_operand`` — one operand of a step becomes a number nobody stated
  (rule c); result, later steps and final answer recomputed;
* ``wrong_operation`` — ``+``/``-`` or ``*``/``/`` swapped in a step, its clean
  new result a value the reference never computes (rule d); later steps and final
  answer recomputed;
* ``dropped_step`` — a step removed whose value a later step uses, the question
  does not state and no other step computes; that later step is the first wrong
  one (rule c); the final answer stays correct;
* ``swapped_steps`` — step k and k+1 swapped where k+1 uses what k computes (rule c
  at k); the final answer stays correct.

``CRITICAL`` holds the kinds whose final answer stays correct although a step is
wrong, the case a final-answer verifier cannot see:

* ``compensating_errors`` — step k's result slips and the first later step using
  it is wrong back to its original result (both rule a); nothing else changes;
* ``unpropagated_slip`` — step k writes a slipped result but the later steps use
  the correct value.

Step labels (``step_labels``) follow first-error labelling, as PRM800K and
Math-Shepherd do: 1 for each step before the first wrong one, 0 for it and every
step after it, since a prefix holding an error is wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from prefalign.tasks.gsm8k import normalize_number
from prefalign.tasks.gsm8k_steps.edits import (
    FLIPS,
    cascade,
    edit_annotation,
    format_number,
    is_clean,
    numbers,
    operators,
    slips,
    substitute,
)
from prefalign.tasks.gsm8k_steps.steps import (
    COMMON_CONSTANTS,
    Step,
    agrees,
    annotation_values,
    evaluate,
    operands,
    question_values,
    reference_values,
    step_values,
)


@dataclass(frozen=True)
class Perturbed:
    """A perturbed solution: its steps, final answer, first wrong step and kind."""

    steps: list[Step]
    final: str
    first_wrong: int
    kind: str
    final_correct: bool


Perturbation = Callable[[str, list[Step], str, random.Random], Perturbed | None]


def step_labels(n_steps: int, first_wrong: int | None) -> list[int]:
    """1 for each step before ``first_wrong``, 0 from it on; all 1 when it is ``None``."""
    cut = n_steps if first_wrong is None else first_wrong
    return [1] * cut + [0] * (n_steps - cut)


def _shuffled(items: list, rng: random.Random) -> list:
    items = list(items)
    rng.shuffle(items)
    return items


def _last(step: Step) -> int:
    return len(step.annotations) - 1


def _uses(step: Step, values: set[Fraction]) -> bool:
    return any(set(operands(a.expression)) & values for a in step.annotations)


def _changeable(question: str, steps: list[Step]) -> list[int]:
    """Steps whose (last) result no other annotation computes and the question does not
    state, so that a later use of the value is a use of that step."""
    results = [a.result for step in steps for a in step.annotations]
    stated = question_values(question)
    return [k for k, step in enumerate(steps) if step.result is not None
            and step.result not in stated and results.count(step.result) == 1]


def _first_user(steps: list[Step], k: int, value: Fraction) -> int | None:
    return next((j for j in range(k + 1, len(steps)) if _uses(steps[j], {value})), None)


def _others(question: str, steps: list[Step], skip: int) -> set[Fraction]:
    """What grounds a number without step ``skip``: the question, constants, other steps."""
    values = question_values(question) | COMMON_CONSTANTS
    return values.union(*(step_values(s) for i, s in enumerate(steps) if i != skip))


def _propagated(steps: list[Step], final: str, k: int, step: Step,
                changes: dict[Fraction, Fraction], kind: str) -> Perturbed | None:
    """``step`` in place of step k, the later steps recomputed; ``None`` unless the final
    answer changes with them."""
    later = cascade(steps, k + 1, changes)
    value = normalize_number(final)
    if later is None or value not in changes:
        return None
    return Perturbed(steps[:k] + [step] + later, format_number(changes[value]), k, kind,
                     final_correct=changes[value] == value)


def wrong_result(question: str, steps: list[Step], final: str,
                 rng: random.Random) -> Perturbed | None:
    """Step k's result slips; later steps and the final answer follow the slipped value."""
    known = reference_values(question, steps)
    for k in _shuffled(_changeable(question, steps), rng):
        value = steps[k].result
        for slip in slips(value, rng):
            if slip in known:
                continue
            step = edit_annotation(steps[k], _last(steps[k]), result=slip)
            found = _propagated(steps, final, k, step, {value: slip}, "wrong_result")
            if found is not None:
                return found
    return None


def wrong_operand(question: str, steps: list[Step], final: str,
                  rng: random.Random) -> Perturbed | None:
    """One operand of step k becomes an unstated number; everything after follows."""
    for k in _shuffled(_changeable(question, steps), rng):
        annotation = steps[k].annotations[-1]
        grounded = (question_values(question) | COMMON_CONSTANTS).union(
            *(step_values(s) for s in steps[:k]),
            *(annotation_values(a) for a in steps[k].annotations[:-1]))
        for start, end, value in _shuffled(numbers(annotation.expression), rng):
            for slip in slips(value, rng):
                expression = (annotation.expression[:start] + format_number(slip)
                              + annotation.expression[end:])
                result = evaluate(expression)
                if (slip in grounded or result is None or not is_clean(result)
                        or result == annotation.result):
                    continue
                step = edit_annotation(steps[k], _last(steps[k]), expression=expression,
                                       result=result)
                found = _propagated(steps, final, k, step, {annotation.result: result},
                                    "wrong_operand")
                if found is not None:
                    return found
    return None


def wrong_operation(question: str, steps: list[Step], final: str,
                    rng: random.Random) -> Perturbed | None:
    """An operator of step k flipped (+/-, */÷) to a clean result the reference never has."""
    known = reference_values(question, steps)
    for k in _shuffled(_changeable(question, steps), rng):
        annotation = steps[k].annotations[-1]
        for start, end, symbol in _shuffled(operators(annotation.expression), rng):
            if symbol not in FLIPS:
                continue
            expression = (annotation.expression[:start] + FLIPS[symbol]
                          + annotation.expression[end:])
            result = evaluate(expression)
            if result is None or not is_clean(result) or result in known:
                continue
            step = edit_annotation(steps[k], _last(steps[k]), expression=expression,
                                   result=result)
            found = _propagated(steps, final, k, step, {annotation.result: result},
                                "wrong_operation")
            if found is not None:
                return found
    return None


def dropped_step(question: str, steps: list[Step], final: str,
                 rng: random.Random) -> Perturbed | None:
    """A step removed whose value only it computes; its first user becomes the first wrong."""
    for i in _shuffled([i for i, s in enumerate(steps) if len(s.annotations) == 1], rng):
        own = step_values(steps[i]) - _others(question, steps, i)
        user = next((j for j in range(i + 1, len(steps)) if _uses(steps[j], own)), None)
        if own and user is not None:
            return Perturbed(steps[:i] + steps[i + 1:], final, user - 1, "dropped_step",
                             final_correct=True)
    return None


def swapped_steps(question: str, steps: list[Step], final: str,
                  rng: random.Random) -> Perturbed | None:
    """Steps k and k+1 swapped where k+1 uses a value only step k computes."""
    for k in _shuffled(list(range(len(steps) - 1)), rng):
        own = step_values(steps[k]) - _others(question, steps, k)
        if own and _uses(steps[k + 1], own):
            swapped = steps[:k] + [steps[k + 1], steps[k]] + steps[k + 2:]
            return Perturbed(swapped, final, k, "swapped_steps", final_correct=True)
    return None


def compensating_errors(question: str, steps: list[Step], final: str,
                        rng: random.Random) -> Perturbed | None:
    """Step k slips and its first user keeps its original result: two wrong annotations,
    the same final answer."""
    known = reference_values(question, steps)
    for k in _shuffled(_changeable(question, steps), rng):
        value = steps[k].result
        j = _first_user(steps, k, value)
        if j is None:
            continue
        index = next(i for i, a in enumerate(steps[j].annotations)
                     if value in operands(a.expression))
        annotation = steps[j].annotations[index]
        for slip in slips(value, rng):
            expression = substitute(annotation.expression, {value: slip})
            recomputed = evaluate(expression)
            if slip in known or recomputed is None or agrees(recomputed,
                                                             annotation.result_text):
                continue
            slipped = edit_annotation(steps[k], _last(steps[k]), result=slip)
            user = edit_annotation(steps[j], index, expression=expression)
            changed = steps[:k] + [slipped] + steps[k + 1:j] + [user] + steps[j + 1:]
            return Perturbed(changed, final, k, "compensating_errors", final_correct=True)
    return None


def unpropagated_slip(question: str, steps: list[Step], final: str,
                      rng: random.Random) -> Perturbed | None:
    """Step k writes a slipped result; the later steps go on with the correct value."""
    known = reference_values(question, steps)
    for k in _shuffled(_changeable(question, steps), rng):
        value = steps[k].result
        if _first_user(steps, k, value) is None:
            continue
        slip = next((s for s in slips(value, rng) if s not in known), None)
        if slip is not None:
            slipped = edit_annotation(steps[k], _last(steps[k]), result=slip)
            return Perturbed(steps[:k] + [slipped] + steps[k + 1:], final, k,
                             "unpropagated_slip", final_correct=True)
    return None


#: The kinds whose final answer stays correct although a step is wrong.
CRITICAL: dict[str, Perturbation] = {
    "compensating_errors": compensating_errors,
    "unpropagated_slip": unpropagated_slip,
}

#: Every perturbation by name, the critical ones included.
PERTURBATIONS: dict[str, Perturbation] = {
    "wrong_result": wrong_result,
    "wrong_operand": wrong_operand,
    "wrong_operation": wrong_operation,
    "dropped_step": dropped_step,
    "swapped_steps": swapped_steps,
    **CRITICAL,
}
