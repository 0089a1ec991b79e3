"""StrategyQA rows (Geva et al. 2021, "Did Aristotle Use a Laptop?") read and checked.

A row is ``{"qid", "question", "answer": true|false, "facts": [str],
"decomposition": [str]}`` (``term`` and ``description`` are kept when present).
``load_strategyqa`` reads a file, a folder holding ``<split>.jsonl``, or a Hub
dataset (``hf:NAME:SPLIT``, through ``read_rows``), and refuses a row without a
question, with an answer that is not a JSON boolean, or with facts or
sub-questions that are not lists of text — one ``DataError`` naming the file,
line and field. Two rows are the same question when their questions are equal
up to case, punctuation and whitespace (``content_key``), so splits built on
it are content-disjoint.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefalign.data.load import HF_PREFIX, read_rows
from prefalign.errors import DataError

_WORD = re.compile(r"[a-z0-9]+")


def strategyqa_file(path: str | Path, split: str = "train") -> str:
    """``path`` itself for a file or Hub source; ``<path>/<split>.jsonl`` for a folder."""
    if str(path).startswith(HF_PREFIX):
        return str(path)
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{split}.jsonl"
        if not candidate.is_file():
            raise DataError(f"StrategyQA folder has no {split}.jsonl", file=str(path))
        return str(candidate)
    return str(path)


def _text_list(row: dict, name: str, file: str, line: int) -> list[str]:
    value = row.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"expected a list of strings, got {type(value).__name__}",
                        file=file, line=line, field=name)
    return [v.strip() for v in value if v.strip()]


def load_strategyqa(path: str | Path, split: str = "train") -> list[dict]:
    """Checked records ``{"qid", "question", "answer": bool, "facts", "decomposition"}``."""
    file = strategyqa_file(path, split)
    records = []
    for line, row in read_rows(file):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataError("expected a non-empty question", file=file, line=line,
                            field="question")
        if "answer" not in row:
            raise DataError("missing (expected true or false)", file=file, line=line,
                            field="answer")
        if not isinstance(row["answer"], bool):
            raise DataError(f"expected true or false, got {row['answer']!r}", file=file,
                            line=line, field="answer")
        records.append({"qid": str(row.get("qid", f"{Path(file).stem}-{line}")),
                        "question": question.strip(), "answer": row["answer"],
                        "facts": _text_list(row, "facts", file, line),
                        "decomposition": _text_list(row, "decomposition", file, line)})
    if not records:
        raise DataError("no StrategyQA rows", file=file)
    return records


def content_key(record: dict) -> str:
    """The question's words in lower case: equal for the same question however written."""
    return " ".join(_WORD.findall(record["question"].lower()))
