"""Many ReAct episodes played in lockstep by a sampler that sees token ids: the
rollouts of multi-turn RL.

Each turn, every unfinished episode's conversation (flat memory: the system prompt,
the task, and each earlier turn with its observation) goes to ``sample`` in one
batch; it returns, per episode, the prompt's token ids, the reply's token ids and
the reply's text. The reply is parsed (:mod:`prefalign.agents.protocol`): a tool
call runs and its result becomes the next user message, a final answer ends the
episode, anything else gets an error observation. After ``max_turns`` turns an
episode ends without an answer. Each turn is kept as (prompt ids, reply ids): the
policy's own tokens are the replies; tool results only ever appear inside later
prompts, so a loss over the replies never trains on tool text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prefalign.agents.protocol import observation, parse_turn, system_prompt, task_message
from prefalign.agents.scoring import sequence_score
from prefalign.agents.tasks import AgentTask, TaskSet
from prefalign.agents.tools import ToolContext, call_tool

Sampler = Callable[[list[list[dict]]], list[tuple[list[int], list[int], str]]]


@dataclass
class Turn:
    """One policy turn: the prompt's and the reply's token ids, the reply's text."""

    prompt_ids: list[int]
    reply_ids: list[int]
    text: str


@dataclass
class Episode:
    """One task played once: its turns, tool calls, answer and scores."""

    task: AgentTask
    task_set: TaskSet
    messages: list[dict]
    turns: list[Turn] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    answer: str = ""
    done: bool = False
    answer_score: float = 0.0
    sequence_score: float = 0.0


def _start(task: AgentTask, task_set: TaskSet) -> Episode:
    messages = [{"role": "system", "content": system_prompt(task.tools, "flat")},
                {"role": "user", "content": task_message(task.instruction, task.starter)}]
    return Episode(task, task_set, messages)


def _advance(episode: Episode, text: str) -> None:
    parsed = parse_turn(text)
    if parsed.kind == "final":
        episode.answer, episode.done = parsed.text, True
        return
    if parsed.kind == "action" and parsed.tool in episode.task.tools:
        context = ToolContext(episode.task_set.documents, episode.task.files)
        result = call_tool(parsed.tool, parsed.text, context)
        episode.calls.append((parsed.tool, parsed.text))
    elif parsed.kind == "action":
        result = f"error: tool {parsed.tool!r} is not available here"
    else:
        result = "error: reply with 'Action: tool_name[argument]' or 'Final Answer: ...'"
    episode.messages = episode.messages + [{"role": "assistant", "content": text.strip()},
                                           {"role": "user", "content": observation(result)}]


def play_episodes(jobs: list[tuple[AgentTask, TaskSet]], sample: Sampler, max_turns: int,
                  score: Callable[[AgentTask, str], float]) -> list[Episode]:
    """Play every (task, set) once, in lockstep, and score each episode."""
    episodes = [_start(task, task_set) for task, task_set in jobs]
    for _ in range(max_turns):
        active = [e for e in episodes if not e.done]
        if not active:
            break
        replies = sample([e.messages for e in active])
        for episode, (prompt_ids, reply_ids, text) in zip(active, replies):
            episode.turns.append(Turn(prompt_ids, reply_ids, text))
            _advance(episode, text)
    for episode in episodes:
        episode.answer_score = score(episode.task, episode.answer)
        episode.sequence_score = sequence_score(list(episode.task.oracle), episode.calls)
    return episodes
