"""The text protocol between an agent's model and the harness (ReAct's, Yao et al. 2023,
"ReAct: Synergizing Reasoning and Acting in Language Models"):

    Thought: what to do next
    Action: tool_name[argument]
    Observation: <the tool's result, written by the harness>
    ...
    Final Answer: the answer

With scratchpad memory each turn begins ``Scratchpad: <everything learnt so far>``
and the model sees only the task, its last turn and the last observation; with
flat memory it sees every turn. The argument runs from the first ``[`` after the
tool name to the last ``]`` of the turn, so code with brackets passes whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefalign.agents.tools import TOOLS

ACTION = re.compile(r"Action:\s*([A-Za-z_]+)\s*\[", re.S)
FINAL = re.compile(r"Final Answer:\s*(.*)", re.S)
SCRATCHPAD = re.compile(r"Scratchpad:\s*(.*?)(?:\n\s*Thought:|\n\s*Action:|\Z)", re.S)
FENCE = re.compile(r"^```[A-Za-z0-9_-]*\n(.*?)\n?```\s*$", re.S)
OBSERVATION_CHARS = 2000
STOP = ("Observation:",)


@dataclass(frozen=True)
class Parsed:
    """A model turn: ``kind`` is ``final`` (``text`` is the answer), ``action`` (``tool``
    and ``text`` the argument) or ``invalid``."""

    kind: str
    text: str = ""
    tool: str = ""


def parse_turn(text: str) -> Parsed:
    """The turn's first action, else its final answer, else ``invalid``."""
    action = ACTION.search(text)
    final = FINAL.search(text)
    if action and (not final or action.start() < final.start()):
        rest = text[action.end():]
        end = rest.rfind("]")
        if end >= 0:
            return Parsed("action", rest[:end].strip(), action.group(1))
    if final:
        return Parsed("final", strip_fence(final.group(1).strip()))
    return Parsed("invalid", text)


def strip_fence(text: str) -> str:
    """A Markdown code block's content, else the text itself."""
    match = FENCE.match(text.strip())
    return match.group(1) if match else text


def scratchpad(text: str) -> str:
    match = SCRATCHPAD.search(text)
    return match.group(1).strip() if match else ""


def observation(result: str) -> str:
    if len(result) > OBSERVATION_CHARS:
        result = result[:OBSERVATION_CHARS] + " ... (cut)"
    return f"Observation: {result}"


def tool_lines(names: tuple[str, ...]) -> str:
    return "\n".join(f"{name}[{TOOLS[name].argument}]: {TOOLS[name].description}"
                     for name in names)


def system_prompt(tools: tuple[str, ...], memory: str) -> str:
    pad = ("Begin every reply with 'Scratchpad:' and everything you have learnt so far; "
           "you will only see your last reply.\n" if memory == "scratchpad" else "")
    return (f"You solve tasks step by step with tools. Tools:\n{tool_lines(tools)}\n"
            f"{pad}Reply with exactly one step:\nThought: what to do next\n"
            f"Action: tool_name[argument]\nYou then get an Observation. When you know the "
            f"answer, reply:\nThought: ...\nFinal Answer: the answer\nIf the tools do not "
            f"give the answer, say that you cannot find it; never invent facts.")


def task_message(instruction: str, starter: str = "", plan: str = "") -> str:
    parts = [instruction]
    if starter:
        parts.append(f"Code:\n```python\n{starter}\n```")
    if plan:
        parts.append(f"Plan:\n{plan}")
    return "\n\n".join(parts)
