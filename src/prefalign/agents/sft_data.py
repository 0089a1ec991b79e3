"""Agentic SFT data: successful trajectories as chat conversations in the ReAct format.

A trajectory passes when its answer score and its sequence score reach the given
minimums. Its conversation is the one the ReAct agent works in
(:mod:`prefalign.agents.protocol`): the system prompt listing the task's tools, the
task, then for every tool call an assistant turn ``Thought: ... / Action:
tool[argument]`` followed by a user turn ``Observation: <result>``, and last the
assistant's ``Final Answer``. A model-driven trajectory keeps its own turns' text;
a scripted one (the oracle) gets a short thought naming the call. Each assistant
turn becomes one ``messages`` row (the conversation up to and including that turn;
the SFT loss falls on its last message), so every turn is trained once.
"""

from __future__ import annotations

from prefalign.agents.protocol import observation, parse_turn, system_prompt, task_message
from prefalign.agents.tasks import AgentTask


def _thought(tool: str, argument: str) -> str:
    return f"Thought: I will use {tool} on {argument.splitlines()[0][:80]}."


def conversation(record: dict, task: AgentTask) -> list[dict]:
    """The ReAct conversation of a saved trajectory (module docstring)."""
    messages = [{"role": "system", "content": system_prompt(task.tools, "flat")},
                {"role": "user", "content": task_message(task.instruction, task.starter)}]
    pending = None
    for step in record["steps"]:
        if step["kind"] == "model":
            pending = step["text"].strip()
            continue
        tool, argument = step["tool"], step["argument"] or ""
        turn = pending if pending and parse_turn(pending).kind == "action" else \
            f"{_thought(tool, argument)}\nAction: {tool}[{argument}]"
        messages += [{"role": "assistant", "content": turn},
                     {"role": "user", "content": observation(step["text"])}]
        pending = None
    final = pending if pending and parse_turn(pending).kind == "final" else \
        f"Thought: I have the answer.\nFinal Answer: {record['answer']}"
    messages.append({"role": "assistant", "content": final})
    return messages


def sft_rows(records: list[dict], tasks: dict[str, AgentTask], min_answer: float = 1.0,
             min_sequence: float = 1.0) -> tuple[list[dict], int]:
    """One ``{"messages"}`` row per assistant turn of each passing trajectory; and how
    many trajectories passed. ``tasks`` maps ``set/id`` to the task."""
    rows, passed = [], 0
    for record in records:
        if record["answer_score"] < min_answer or record["sequence_score"] < min_sequence:
            continue
        passed += 1
        messages = conversation(record, tasks[f"{record['task_set']}/{record['task_id']}"])
        for end, message in enumerate(messages):
            if message["role"] == "assistant":
                rows.append({"messages": messages[:end + 1],
                             "task": f"{record['task_set']}/{record['task_id']}"})
    return rows, passed
