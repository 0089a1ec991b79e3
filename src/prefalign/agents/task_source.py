"""The agent task sets as a task source (``agent:set=chains-train``), for online RL.

A ``prompt`` record per task: its instruction as the prompt, and ``task_set`` and
``task_id`` naming the task, which is what multi-turn RL plays
(``prefalign agent-rl``). The verifier scores a completion as the task's final
answer (the text after ``Final Answer:``, else all of it) with the task's own
scorer — one turn, no tools: what a single-turn reward or the held-out evaluation
of a one-shot answer can use.
"""

from __future__ import annotations

from functools import lru_cache

from prefalign.agents.protocol import parse_turn
from prefalign.agents.tasks import AgentTask, load_task_set
from prefalign.tasks.base import Task
from prefalign.tasks.registry import register_task


@lru_cache(maxsize=16)
def _tasks(name: str) -> dict[str, AgentTask]:
    return {task.id: task for task in load_task_set(name).tasks}


def find_task(record: dict) -> AgentTask:
    """The task a record names (``task_set``, ``task_id``)."""
    return _tasks(record["task_set"])[record["task_id"]]


def prompt_records(set: str = "chains-train", limit: int = 0) -> list[dict]:  # noqa: A002
    tasks = load_task_set(set).tasks
    return [{"prompt": t.instruction, "task_set": set, "task_id": t.id}
            for t in (tasks[:limit] if limit > 0 else tasks)]


class AgentAnswerVerifier:
    """1 when the completion's final answer passes the task's answer scorer."""

    name = "agent"
    required_fields = ("task_set", "task_id")

    def score(self, completion: str, record: dict) -> float:
        from prefalign.agents.harness import score_answer

        parsed = parse_turn(completion)
        answer = parsed.text if parsed.kind == "final" else completion.strip()
        return score_answer(find_task(record), answer)


AGENT_TASK = register_task(Task(
    name="agent", makers={"prompt": prompt_records},
    content_key=lambda record: f"{record['task_set']}/{record['task_id']}",
    verifier=AgentAnswerVerifier,
    description="agent task sets (benchmark, gaia, chains, chains-train, code) as prompts"))
