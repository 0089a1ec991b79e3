"""The agents: scripted (oracle, random) and model-driven (zero-shot, ReAct,
Plan-and-Execute, planner–executor), each returning a :class:`Trajectory`.

- **oracle**: the task's scripted tool calls, then its reference answer — 100% on
  both scores when the tasks, tools and scorers are right.
- **random**: one to three calls of random tools with words of the instruction as
  arguments, then a random word as the answer (seeded by the task id) — near 0.
- **zero-shot**: the model answers from the instruction alone, no tools.
- **react**: Thought / Action / Observation turns until a Final Answer or
  ``max_steps`` (Yao et al. 2023), flat or scratchpad memory (:mod:`.protocol`).
- **plan-execute**: the model first writes a numbered plan, then ReAct runs with the
  plan in the task message (Wang et al. 2023, "Plan-and-Solve Prompting").
- **planner-executor**: two roles, one or two models: the planner sees the task and
  the results so far and names the next sub-step (or the final answer); the executor
  turns the sub-step into one tool call.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from prefalign.agents.backends import ChatModel
from prefalign.agents.protocol import (
    STOP,
    observation,
    parse_turn,
    scratchpad,
    system_prompt,
    task_message,
    tool_lines,
)
from prefalign.agents.tasks import AgentTask
from prefalign.agents.tools import ToolContext, call_tool
from prefalign.agents.trajectory import Step, Trajectory

AGENTS = ("oracle", "random", "zero-shot", "react", "plan-execute", "planner-executor")
MEMORIES = ("flat", "scratchpad")
REFUSAL_ANSWER = "I could not find any information about that."


@dataclass
class AgentSettings:
    """Turn budget and reply length of the model-driven agents."""

    memory: str = "flat"
    max_steps: int = 8
    max_new_tokens: int = 192


def oracle_answer(task: AgentTask) -> str:
    return REFUSAL_ANSWER if task.scorer == "refusal" else str(task.answer)


def _tool(trajectory: Trajectory, task: AgentTask, context: ToolContext, name: str,
          argument: str) -> str:
    started = time.perf_counter()
    if name in task.tools:
        result = call_tool(name, argument, context)
    else:
        result = f"error: tool {name!r} is not available here (tools: {', '.join(task.tools)})"
    trajectory.steps.append(Step("tool", result, time.perf_counter() - started, name, argument))
    return result


def _model(trajectory: Trajectory, model: ChatModel, messages: list[dict],
           max_new_tokens: int, stop: tuple[str, ...] = STOP) -> str:
    reply = model.reply(messages, stop, max_new_tokens)
    trajectory.steps.append(Step("model", reply.text, reply.seconds,
                                 prompt_tokens=reply.prompt_tokens,
                                 completion_tokens=reply.completion_tokens))
    trajectory.messages = [*messages, {"role": "assistant", "content": reply.text}]
    return reply.text


def run_oracle(task: AgentTask, context: ToolContext, trajectory: Trajectory) -> str:
    for name, argument in task.oracle:
        _tool(trajectory, task, context, name, argument)
    return oracle_answer(task)


def run_random(task: AgentTask, context: ToolContext, trajectory: Trajectory) -> str:
    rng = random.Random(f"random-agent-{task.id}")
    words = task.instruction.split()
    for _ in range(rng.randint(1, 3)):
        _tool(trajectory, task, context, rng.choice(task.tools),
              " ".join(rng.sample(words, min(2, len(words)))))
    return rng.choice(words)


def run_zero_shot(task: AgentTask, model: ChatModel, trajectory: Trajectory,
                  settings: AgentSettings) -> str:
    messages = [{"role": "system", "content": "Answer the task directly and briefly. If "
                 "you do not know, say that you cannot find it."},
                {"role": "user", "content": task_message(task.instruction, task.starter)}]
    text = _model(trajectory, model, messages, settings.max_new_tokens, stop=())
    parsed = parse_turn(text)
    return parsed.text if parsed.kind == "final" else text.strip()


def react_loop(task: AgentTask, model: ChatModel, context: ToolContext,
               trajectory: Trajectory, settings: AgentSettings, plan: str = "") -> str:
    """ReAct turns until a final answer or ``settings.max_steps`` (module docstring)."""
    head = [{"role": "system", "content": system_prompt(task.tools, settings.memory)},
            {"role": "user", "content": task_message(task.instruction, task.starter, plan)}]
    history: list[dict] = []
    for _ in range(settings.max_steps):
        text = _model(trajectory, model, head + history, settings.max_new_tokens)
        parsed = parse_turn(text)
        if parsed.kind == "final":
            return parsed.text
        if parsed.kind == "action":
            result = _tool(trajectory, task, context, parsed.tool, parsed.text)
        else:
            result = "error: reply with 'Action: tool_name[argument]' or 'Final Answer: ...'"
        turn = [{"role": "assistant", "content": text.strip()},
                {"role": "user", "content": observation(result)}]
        if settings.memory == "scratchpad":
            notes = scratchpad(text)
            history = ([{"role": "assistant", "content": f"Scratchpad: {notes}"}]
                       if notes else []) + turn
        else:
            history += turn
    return ""


def run_plan_execute(task: AgentTask, model: ChatModel, context: ToolContext,
                     trajectory: Trajectory, settings: AgentSettings) -> str:
    messages = [{"role": "system", "content": "Write a short numbered plan (at most five "
                 f"steps) of tool calls that solves the task. Tools:\n"
                 f"{tool_lines(task.tools)}\nDo not solve it yet."},
                {"role": "user", "content": task_message(task.instruction, task.starter)}]
    plan = _model(trajectory, model, messages, settings.max_new_tokens, stop=()).strip()
    return react_loop(task, model, context, trajectory, settings, plan=plan)


def run_planner_executor(task: AgentTask, planner: ChatModel, executor: ChatModel,
                         context: ToolContext, trajectory: Trajectory,
                         settings: AgentSettings) -> str:
    """Planner names a sub-step or the answer; executor makes it one tool call."""
    results: list[str] = []
    pad = (" Begin with 'Scratchpad:' and everything learnt so far: you see only the "
           "latest result." if settings.memory == "scratchpad" else "")
    for _ in range(settings.max_steps):
        known = ("\n".join(results) if settings.memory == "flat" else
                 (results[-1] if results else ""))
        plan_messages = [
            {"role": "system", "content": "You plan; a helper runs tools for you. Reply "
             "'Next: <one sub-step for the helper>' or, when the results answer the task, "
             "'Final Answer: <answer>'. If the tools cannot answer, say you cannot find it." + pad},
            {"role": "user", "content": task_message(task.instruction, task.starter)
             + (f"\n\nResults so far:\n{known}" if known else "")}]
        text = _model(trajectory, planner, plan_messages, settings.max_new_tokens, stop=())
        parsed = parse_turn(text)
        if parsed.kind == "final":
            return parsed.text
        step = text.split("Next:", 1)[-1].strip()
        exec_messages = [{"role": "system", "content": system_prompt(task.tools, "flat")},
                         {"role": "user", "content": step}]
        action = parse_turn(_model(trajectory, executor, exec_messages,
                                   settings.max_new_tokens))
        result = (_tool(trajectory, task, context, action.tool, action.text)
                  if action.kind == "action" else "error: the helper made no tool call")
        entry = f"- {step} → {result}"
        results = results + [entry] if settings.memory == "flat" else [
            (f"{scratchpad(text)}\n" if scratchpad(text) else "") + entry]
    return ""
