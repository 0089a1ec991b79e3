"""Process-supervision records from GSM8K: references and perturbations, labelled per step.

``build_process_records`` reads a GSM8K file (or ``<folder>/<split>.jsonl``) in
order until it has ``n_problems`` problems whose reference passes the checker
fully; for each, it writes the reference and one perturbation of each kind that applies::

    {"prompt": question, "steps": [line, ...], "labels": [1, 1, 0, ...],
     "final": "72", "final_correct": true, "first_wrong": 2 | null,
     "kind": "reference" | "wrong_result" | ..., "critical": false, "answer": "72",
     "problem": 0}

``labels`` follow ``step_labels`` (1 before the first wrong step, 0 from it on);
``critical`` marks the constructed critical case (a wrong step, the right final
answer: ``perturb.CRITICAL``); ``problem`` is the row's 0-based position in the
file. A row without question or answer text, or whose answer has no ``####``
line or no step before it, is a
``DataError`` naming the file, line and field; a solution whose steps carry no
calculator annotation (about 1% of GSM8K) cannot be checked and is skipped. Each
perturbation draws from its own ``random.Random`` seeded by ``seed``, the problem
and the kind, so a record does not depend on which other kinds are asked for.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from prefalign.data.load import read_rows
from prefalign.errors import ConfigError, DataError
from prefalign.tasks.gsm8k import GSM8K_FIELDS, content_key, extract_final_answer, gsm8k_file
from prefalign.tasks.gsm8k_steps.perturb import CRITICAL, PERTURBATIONS, step_labels
from prefalign.tasks.gsm8k_steps.steps import (
    Step,
    UncheckableSolution,
    check_steps,
    parse_solution,
)

__all__ = ["build_process_records", "content_key", "process_records"]


def _record(question: str, steps: list[Step], final: str, first_wrong: int | None,
            kind: str, final_correct: bool, answer: str, problem: int) -> dict:
    return {"prompt": question, "steps": [step.text for step in steps],
            "labels": step_labels(len(steps), first_wrong), "final": final,
            "final_correct": final_correct, "first_wrong": first_wrong, "kind": kind,
            "critical": kind in CRITICAL, "answer": answer, "problem": problem}


def _solution(row: dict, file: str, line: int) -> tuple[list[Step], str, str] | None:
    """The row's steps, final answer and gold answer; ``None`` for an unannotated one."""
    for name in GSM8K_FIELDS:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise DataError("expected non-empty text", file=file, line=line, field=name)
    try:
        steps, final = parse_solution(row["answer"])
    except UncheckableSolution:
        return None
    except DataError as error:
        raise DataError(error.reason, file=file, line=line, field=error.field) from None
    return steps, final, extract_final_answer(row["answer"])


def build_process_records(path: str | Path, split: str = "train", *,
                          n_problems: int | None = None, seed: int = 0,
                          kinds: Iterable[str] = tuple(PERTURBATIONS)) -> list[dict]:
    """Reference and perturbed solutions of the first ``n_problems`` usable problems (those
    whose reference passes the checker; all when ``None``), as described in the module
    docstring."""
    kinds = list(kinds)
    unknown = [kind for kind in kinds if kind not in PERTURBATIONS]
    if unknown:
        raise ConfigError(f"unknown perturbation '{unknown[0]}'; valid: "
                          f"{', '.join(PERTURBATIONS)}")
    file = gsm8k_file(path, split)
    rows = read_rows(file)
    records = []
    used = 0
    for problem, (line, row) in enumerate(rows):
        if n_problems is not None and used >= n_problems:
            break
        solution = _solution(row, str(file), line)
        if solution is None or not all(check_steps(row["question"], solution[0])):
            continue
        used += 1
        steps, final, answer = solution
        question = row["question"]
        records.append(_record(question, steps, final, None, "reference", True, answer,
                               problem))
        for kind in kinds:
            rng = random.Random(f"{seed}/{problem}/{kind}")
            found = PERTURBATIONS[kind](question, steps, final, rng)
            if found is not None:
                records.append(_record(question, found.steps, found.final, found.first_wrong,
                                       kind, found.final_correct, answer, problem))
    return records


def process_records(path: str, split: str = "train", n: int = 500,
                    seed: int = 0) -> list[dict]:
    """The ``steps`` maker of the ``gsm8k_steps`` task: ``build_process_records``."""
    return build_process_records(path, split, n_problems=n, seed=seed)
