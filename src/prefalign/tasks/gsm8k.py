"""GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems") as prompts.

Raw rows are ``{"question", "answer"}``; the answer is a worked solution whose
last line is ``#### <final answer>`` (steps carry ``<<a*b=c>>`` calculator
annotations). ``load_gsm8k`` turns a file — or a folder holding ``train.jsonl``
(and ``test.jsonl``) — into prompt records::

    {"prompt": question, "answer": "72", "solution": <the worked answer>}

so the folder works as an RL prompt set and as an evaluation set with the
``gsm8k`` verifier; its ``sft`` records pair the question with the worked
solution (``load_gsm8k_sft``). A completion is judged by its own final answer: the text
after its last ``####`` when it writes one, else the last number in it; both
sides are compared as exact rationals after removing ``,``, ``$`` and a
trailing ``.``.

Sources: the file or folder itself, or ``gsm8k:path=FOLDER&split=test``. Two
records are the same problem when their questions are equal up to case and
whitespace (the content key), so a question repeated with other spacing never
sits on both sides of a split.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from prefalign.data.load import read_rows
from prefalign.errors import DataError
from prefalign.tasks.base import Task, first_row_matches
from prefalign.tasks.registry import register_task

FINAL_MARKER = "####"
GSM8K_FIELDS = ("question", "answer")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_number(text: str) -> Fraction | None:
    """``"1,234.50"``, ``"$72"``, ``"72."`` → an exact ``Fraction``; ``None`` if not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if not cleaned:
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_final_answer(answer: str) -> str | None:
    """The reference final answer: the text after the last ``#### `` (stripped), or ``None``."""
    if FINAL_MARKER not in answer:
        return None
    final = answer.rsplit(FINAL_MARKER, 1)[1].strip()
    return final.replace(",", "") or None


def completion_answer(completion: str) -> str | None:
    """What a completion answers: the number after its last ``####``, else its last number."""
    if FINAL_MARKER in completion:
        tail = completion.rsplit(FINAL_MARKER, 1)[1]
        found = _NUMBER.findall(tail)
        return found[0] if found else None
    found = _NUMBER.findall(completion)
    return found[-1] if found else None


def answers_match(completion: str, gold: str) -> bool:
    """True when the completion's final answer equals ``gold`` as a number."""
    predicted = completion_answer(completion)
    if predicted is None:
        return False
    expected, value = normalize_number(gold), normalize_number(predicted)
    return expected is not None and value is not None and value == expected


def is_gsm8k_row(row: dict) -> bool:
    """A raw GSM8K row: ``question`` and ``answer`` and no ``prompt``."""
    return "prompt" not in row and all(isinstance(row.get(f), str) for f in GSM8K_FIELDS)


def gsm8k_file(path: str | Path, split: str = "train") -> Path:
    """``path`` itself for a file; ``<path>/<split>.jsonl`` for a folder."""
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{split}.jsonl"
        if not candidate.is_file():
            raise DataError(f"GSM8K folder has no {split}.jsonl", file=str(path))
        return candidate
    return path


def load_gsm8k(path: str | Path, split: str = "train") -> list[dict]:
    """Prompt records ``{"prompt", "answer", "solution"}`` from a GSM8K file or folder.

    A row without ``question``/``answer`` text, or whose answer has no
    ``#### `` line, is a ``DataError`` naming the file, line and field.
    """
    file = gsm8k_file(path, split)
    records = []
    for line, row in read_rows(file):
        for name in GSM8K_FIELDS:
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise DataError("expected non-empty text", file=str(file), line=line, field=name)
        final = extract_final_answer(row["answer"])
        if final is None:
            raise DataError(f"no final answer: the solution must end with '{FINAL_MARKER} "
                            "<answer>'", file=str(file), line=line, field="answer")
        records.append({"prompt": row["question"], "answer": final,
                        "solution": row["answer"]})
    return records


def load_gsm8k_sft(path: str | Path, split: str = "train") -> list[dict]:
    """SFT records ``{"prompt": question, "completion": worked solution}`` (the solution
    with its ``<<…>>`` annotations and ``#### answer`` line, as a model should write it)."""
    return [{"prompt": record["prompt"], "completion": record["solution"]}
            for record in load_gsm8k(path, split)]


def looks_like_gsm8k(source: str) -> bool:
    """True for a folder with ``train.jsonl`` (or ``test.jsonl``), or a .jsonl/.json file,
    whose first row is GSM8K."""
    return first_row_matches(source, ("train", "test"), is_gsm8k_row)


def content_key(record: dict) -> str:
    """The question (the prompt) in lower case with its whitespace collapsed."""
    prompt = record["prompt"]
    text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
    return " ".join(text.lower().split())


class GSM8KVerifier:
    """1 when the completion's final answer equals the record's ``answer`` as a number."""

    name = "gsm8k"
    required_fields = ("answer",)

    def score(self, completion: str, record: dict) -> float:
        return 1.0 if answers_match(completion, str(record["answer"])) else 0.0


def gsm8k_verifier() -> GSM8KVerifier:
    """``GSM8KVerifier()``: the completion's final number against the reference answer."""
    return GSM8KVerifier()


TASK = register_task(Task(
    name="gsm8k",
    makers={"prompt": load_gsm8k, "sft": load_gsm8k_sft},
    content_key=content_key,
    verifier=gsm8k_verifier,
    reads=looks_like_gsm8k,
    description="grade-school math word problems (Cobbe et al. 2021), from a file or folder",
))
