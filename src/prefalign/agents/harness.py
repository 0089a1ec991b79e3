"""Run an agent over task sets: score each task twice, save each trajectory, resume.

For each task: the agent runs (:mod:`prefalign.agents.agents`) with the task's
tools over its set's corpus and its own files; the answer is scored by the task's
scorer (a code task's answer runs against its assertions in the sandbox) and the
tool calls by the sequence score; the trajectory is appended to
``<out>/trajectories.jsonl``. Tasks already in that file are skipped, so a killed
run resumes where it stopped; a torn last line is dropped first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefalign.agents.agents import (
    AgentSettings,
    react_loop,
    run_oracle,
    run_plan_execute,
    run_planner_executor,
    run_random,
    run_zero_shot,
)
from prefalign.agents.backends import ChatModel
from prefalign.agents.protocol import strip_fence
from prefalign.agents.scoring import ANSWER_SCORERS, sequence_score, tests_passed
from prefalign.agents.tasks import AgentTask, TaskSet
from prefalign.agents.tools import ToolContext
from prefalign.agents.trajectory import Trajectory, append_trajectory, read_trajectories
from prefalign.errors import ConfigError
from prefalign.log import say

TRAJECTORIES = "trajectories.jsonl"


@dataclass
class AgentSpec:
    """Which agent, its memory and settings, and its model(s) (none for scripted ones)."""

    name: str
    settings: AgentSettings
    model: ChatModel | None = None
    executor: ChatModel | None = None

    @property
    def model_name(self) -> str:
        if self.model is None:
            return "scripted"
        if self.executor is not None and self.executor is not self.model:
            return f"{self.model.name} + {self.executor.name}"
        return self.model.name


def score_answer(task: AgentTask, answer: str) -> float:
    if task.scorer == "tests":
        return tests_passed(strip_fence(answer), list(task.tests), task.files)
    return ANSWER_SCORERS[task.scorer](answer, task.answer)


def _runner(spec: AgentSpec) -> Callable[[AgentTask, ToolContext, Trajectory], str]:
    model, settings = spec.model, spec.settings
    if spec.name == "oracle":
        return run_oracle
    if spec.name == "random":
        return run_random
    if model is None:
        raise ConfigError(f"agent {spec.name!r} needs a model (--model)")
    runners = {
        "zero-shot": lambda t, c, tr: run_zero_shot(t, model, tr, settings),
        "react": lambda t, c, tr: react_loop(t, model, c, tr, settings),
        "plan-execute": lambda t, c, tr: run_plan_execute(t, model, c, tr, settings),
        "planner-executor": lambda t, c, tr: run_planner_executor(
            t, model, spec.executor or model, c, tr, settings),
    }
    if spec.name not in runners:
        raise ConfigError(f"unknown agent {spec.name!r}; agents: oracle, random, "
                          f"{', '.join(runners)}")
    return runners[spec.name]


def run_task(spec: AgentSpec, task: AgentTask, task_set: TaskSet) -> Trajectory:
    """One task: run, score, time."""
    trajectory = Trajectory(task.id, task_set.name, task.category, task.level, spec.name,
                            spec.settings.memory, spec.model_name)
    context = ToolContext(task_set.documents, task.files)
    started = time.perf_counter()
    answer = _runner(spec)(task, context, trajectory)
    trajectory.seconds = time.perf_counter() - started
    trajectory.answer = answer
    trajectory.answer_score = score_answer(task, answer)
    trajectory.sequence_score = sequence_score(list(task.oracle), trajectory.tool_calls)
    return trajectory


def _restore(path: Path) -> set[str]:
    """Ids of the tasks already saved; rewrites the file without a torn last line."""
    records = read_trajectories(path)
    if path.is_file():
        text = "".join(json.dumps(r) + "\n" for r in records)
        if path.read_text() != text:
            path.write_text(text)
    return {f"{r['task_set']}/{r['task_id']}" for r in records}


def run_agent(spec: AgentSpec, task_sets: list[TaskSet], out: Path,
              limit: int | None = None) -> list[dict]:
    """Every task of ``task_sets`` (the first ``limit`` of each), resuming from ``out``;
    all saved trajectories of those sets."""
    path = out / TRAJECTORIES
    done = _restore(path)
    todo = [(ts, t) for ts in task_sets for t in ts.tasks[:limit]]
    for index, (task_set, task) in enumerate(todo, start=1):
        key = f"{task_set.name}/{task.id}"
        if key in done:
            continue
        trajectory = run_task(spec, task, task_set)
        append_trajectory(path, trajectory)
        say("agent", f"{index}/{len(todo)} {key}: answer {trajectory.answer_score:.2f}, "
            f"sequence {trajectory.sequence_score:.2f} ({trajectory.seconds:.1f}s)")
    wanted = {f"{ts.name}/{t.id}" for ts, t in todo}
    return [r for r in read_trajectories(path) if f"{r['task_set']}/{r['task_id']}" in wanted]
