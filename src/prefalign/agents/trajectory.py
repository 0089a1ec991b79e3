"""A trajectory: every model turn and tool call of one agent on one task, saved as JSONL.

One line per task in ``trajectories.jsonl``, appended as each task finishes (so a
killed run keeps every finished task and a re-run skips them). A line holds the
task's id, set, category and level, the agent and its memory, the model, every
step (a model turn: its text, token counts and seconds; a tool call: the tool, its
argument, its result and seconds), the messages as the model last saw them, the
final answer and its two scores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Step:
    """A model turn (``kind="model"``) or a tool call (``kind="tool"``)."""

    kind: str
    text: str
    seconds: float = 0.0
    tool: str | None = None
    argument: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Trajectory:
    """One agent's run on one task (module docstring)."""

    task_id: str
    task_set: str
    category: str
    level: int
    agent: str
    memory: str
    model: str
    steps: list[Step] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    answer: str = ""
    answer_score: float = 0.0
    sequence_score: float = 0.0
    seconds: float = 0.0

    @property
    def tool_calls(self) -> list[tuple[str, str]]:
        """The (tool, argument) of every tool call, in order."""
        return [(step.tool, step.argument or "") for step in self.steps
                if step.kind == "tool" and step.tool]

    def to_json(self) -> dict:
        record = asdict(self)
        record["tool_calls"] = self.tool_calls
        record["prompt_tokens"] = sum(s.prompt_tokens for s in self.steps)
        record["completion_tokens"] = sum(s.completion_tokens for s in self.steps)
        return record


def read_trajectories(path: Path) -> list[dict]:
    """The saved lines of ``path`` (none if it does not exist); a torn last line from a
    killed run is dropped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def append_trajectory(path: Path, trajectory: Trajectory) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(trajectory.to_json()) + "\n")
        out.flush()
