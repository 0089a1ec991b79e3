"""Agent tasks: the record, the shipped task sets, and loading with one-line errors.

A task set is ``<name>.tasks.jsonl`` (one task per line) with an optional
``<name>.corpus.jsonl`` (the documents ``search`` and ``read_document`` see), both
in ``prefalign/agents/data`` for the shipped sets, or any folder. A task::

    {"id": "tool-01", "category": "tool_use", "level": 1,
     "instruction": "In which year was the Veldt Observatory founded?",
     "tools": ["search", "read_document"],
     "answer": "1874", "scorer": "exact",
     "expected_tools": ["search", "read_document"],
     "oracle": [["search", "Veldt Observatory founded"], ["read_document", "doc-07"]],
     "files": {"notes.txt": "..."},                     # optional: the task's folder
     "tests": ["assert f(2) == 4"], "starter": "..."}    # code tasks (scorer "tests")

``oracle`` is the scripted solution: the tool calls in order, and ``answer`` (for a
code task, the fixed code) is its final answer; the sequence score wants those calls
in that order (``expected_tools`` names them, as a check). A ``refusal`` task has
``"answer": null``: the entity it asks about is in no document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from prefalign.agents.scoring import ANSWER_SCORERS
from prefalign.agents.tools import TOOLS, Document
from prefalign.errors import DataError

SCORERS = (*ANSWER_SCORERS, "tests")
REQUIRED = ("id", "category", "instruction", "tools", "scorer", "expected_tools", "oracle")
SHIPPED = ("benchmark", "gaia", "chains", "code")
GENERATED = {"chains": ("test", 5), "chains-train": ("train", 14)}


@dataclass(frozen=True)
class AgentTask:
    """One task (module docstring)."""

    id: str
    set: str
    category: str
    instruction: str
    tools: tuple[str, ...]
    scorer: str
    expected_tools: tuple[str, ...]
    oracle: tuple[tuple[str, str], ...]
    answer: Any = None
    level: int = 1
    files: dict[str, str] = field(default_factory=dict)
    tests: tuple[str, ...] = ()
    starter: str = ""


@dataclass
class TaskSet:
    """A task set: its tasks and its corpus."""

    name: str
    tasks: list[AgentTask]
    documents: dict[str, Document]


def data_folder() -> Path:
    return Path(str(resources.files("prefalign.agents") / "data"))


def _fail(path: Path, line: int, message: str) -> DataError:
    return DataError(f"{path}:{line}: {message}")


def _task(raw: Any, name: str, path: Path, line: int) -> AgentTask:
    if not isinstance(raw, dict):
        raise _fail(path, line, "a task is a JSON object")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise _fail(path, line, f"missing field '{missing[0]}'")
    if raw["scorer"] not in SCORERS:
        raise _fail(path, line, f"field 'scorer': unknown {raw['scorer']!r}; "
                    f"valid: {', '.join(SCORERS)}")
    for key in ("tools", "expected_tools"):
        unknown = [t for t in raw[key] if t not in TOOLS]
        if unknown:
            raise _fail(path, line, f"field '{key}': unknown tool {unknown[0]!r}")
    oracle = raw["oracle"]
    if not isinstance(oracle, list) or not all(
            isinstance(c, list) and len(c) == 2 and c[0] in raw["tools"] for c in oracle):
        raise _fail(path, line, "field 'oracle': expected [[tool, argument], ...] with "
                    "tools from 'tools'")
    if [c[0] for c in oracle] != list(raw["expected_tools"]):
        raise _fail(path, line, "field 'expected_tools': must name the oracle's calls in order")
    if raw["scorer"] == "tests" and not raw.get("tests"):
        raise _fail(path, line, "field 'tests': a code task needs its assertions")
    if raw["scorer"] != "refusal" and raw.get("answer") is None:
        raise _fail(path, line, "field 'answer': missing (only refusal tasks have none)")
    if not str(raw["instruction"]).strip():
        raise _fail(path, line, "field 'instruction': empty")
    return AgentTask(str(raw["id"]), name, str(raw["category"]), str(raw["instruction"]),
                     tuple(raw["tools"]), raw["scorer"], tuple(raw["expected_tools"]),
                     tuple((str(t), str(a)) for t, a in oracle), raw.get("answer"),
                     int(raw.get("level", 1)), dict(raw.get("files") or {}),
                     tuple(raw.get("tests") or ()), str(raw.get("starter") or ""))


def _rows(path: Path) -> list[tuple[int, Any]]:
    rows = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            rows.append((line, json.loads(text)))
        except json.JSONDecodeError as error:
            raise _fail(path, line, f"invalid JSON: {error.msg}") from None
    return rows


def load_documents(path: Path) -> dict[str, Document]:
    documents = {}
    for line, raw in _rows(path) if path.is_file() else []:
        if not isinstance(raw, dict) or not all(k in raw for k in ("id", "title", "text")):
            raise _fail(path, line, "a document needs 'id', 'title' and 'text'")
        documents[str(raw["id"])] = Document(str(raw["id"]), str(raw["title"]), str(raw["text"]))
    return documents


def load_task_set(name: str, folder: Path | None = None) -> TaskSet:
    """Task set ``name`` from ``folder`` (default: the shipped sets). ``chains`` (35
    held-out tasks) and ``chains-train`` (98 tasks of other people, for agentic SFT)
    are generated (:mod:`prefalign.agents.chains`) unless a file of that name exists."""
    folder = folder or data_folder()
    path = folder / f"{name}.tasks.jsonl"
    if not path.is_file():
        if name in GENERATED:
            from prefalign.agents.chains import chain_task_set

            split, per_hop = GENERATED[name]
            return chain_task_set(split, per_hop)
        raise DataError(f"no task set {name!r}: {path} does not exist "
                        f"(shipped: {', '.join(SHIPPED)}, chains-train)")
    tasks = [_task(raw, name, path, line) for line, raw in _rows(path)]
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: repeated task id {next(i for i in ids if ids.count(i) > 1)!r}")
    return TaskSet(name, tasks, load_documents(folder / f"{name}.corpus.jsonl"))
