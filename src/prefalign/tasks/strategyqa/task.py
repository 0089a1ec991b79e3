"""The ``strategyqa`` task: implicit multi-hop yes/no questions with a yes/no verifier.

Sources: a StrategyQA file or folder (``train.jsonl``/``dev.jsonl``), or
``strategyqa:path=FOLDER&split=dev&style=answer``. Record kinds:

* ``sft`` — ``style=answer``: question → `` yes``/`` no`` (Phase A);
  ``style=reasoning``: question → sub-questions, facts, answer (Phase B);
* ``prompt`` — the prompt of either style with the record's ``answer`` (a
  boolean), for pass-rate evaluation and RL with the ``strategyqa`` verifier.

The staged recipe (baseline, distillation, draft-conditioned DPO, ablations) is
the ``strategyqa`` pipeline (``configs/strategyqa.yaml``).
"""

from __future__ import annotations

from prefalign.errors import ConfigError
from prefalign.tasks.base import Task, first_row_matches
from prefalign.tasks.registry import register_task
from prefalign.tasks.strategyqa.answers import answer_word, strategyqa_verifier
from prefalign.tasks.strategyqa.data import content_key, load_strategyqa
from prefalign.tasks.strategyqa.formats import answer_prompt, rationale, reasoning_prompt

STYLES = ("answer", "reasoning")


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ConfigError(f"strategyqa: unknown style {style!r}; expected one of "
                          f"{', '.join(STYLES)}")


def prompt_of(record: dict, style: str) -> str:
    """The prompt of ``record`` in ``style`` (``answer`` or ``reasoning``)."""
    _check_style(style)
    return (answer_prompt if style == "answer" else reasoning_prompt)(record["question"])


def completion_of(record: dict, style: str, max_facts: int = 1) -> str:
    """The reference reply: the answer word (``answer``), or the rationale (``reasoning``)."""
    _check_style(style)
    if style == "answer":
        return " " + answer_word(record["answer"])
    return rationale(record, max_facts)


def sft_records(path: str = "", split: str = "train", style: str = "reasoning",
                max_facts: int = 1) -> list[dict]:
    """``{"prompt", "completion", "qid", "answer"}`` for each question of ``path``."""
    return [{"prompt": prompt_of(r, style), "completion": completion_of(r, style, max_facts),
             "qid": r["qid"], "answer": r["answer"], "question": r["question"]}
            for r in load_strategyqa(path, split)]


def prompt_records(path: str = "", split: str = "dev", style: str = "reasoning") -> list[dict]:
    """``{"prompt", "answer", "qid"}`` for each question of ``path``."""
    return [{"prompt": prompt_of(r, style), "answer": r["answer"], "qid": r["qid"],
             "question": r["question"]} for r in load_strategyqa(path, split)]


def is_strategyqa_row(row: dict) -> bool:
    """A raw StrategyQA row: a ``question`` and a boolean ``answer``."""
    return isinstance(row.get("question"), str) and isinstance(row.get("answer"), bool)


def looks_like_strategyqa(source: str) -> bool:
    """A folder with ``train.jsonl`` or ``dev.jsonl``, or a .jsonl/.json file, whose first
    row is StrategyQA."""
    return first_row_matches(source, ("train", "dev"), is_strategyqa_row)


def _content_key(record: dict) -> str:
    return content_key({"question": record.get("question", record.get("prompt", ""))})


TASK = register_task(Task(
    name="strategyqa",
    makers={"sft": sft_records, "prompt": prompt_records},
    content_key=_content_key,
    verifier=strategyqa_verifier,
    reads=looks_like_strategyqa,
    pipeline="strategyqa",
    description="implicit multi-hop yes/no questions (Geva et al. 2021), from a file or folder",
))
