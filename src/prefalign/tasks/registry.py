"""``TASKS``: the one registry of tasks.

A task module registers itself at import with ``register_task(Task(...))``.
Every module and subpackage of ``prefalign.tasks`` is imported before the first
lookup, and so is every module named in the ``prefalign.tasks`` entry-point group
of an installed package (prefalign's own agent task sets register that way, and a
plug-in package can too), so a new task is one new module here, a module named by an
entry point, or any module that calls ``register_task`` before its task is used (a
test).

Code that derives something from every task (the reward registry makes one
reward per verifier) subscribes with ``on_register``: it sees the tasks already
registered and each one registered later.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from prefalign.discovery import import_entry_points, import_submodules
from prefalign.errors import ConfigError
from prefalign.tasks.base import Task

TASKS: dict[str, Task] = {}
_PACKAGE = "prefalign.tasks"
ENTRY_POINTS = "prefalign.tasks"
_subscribers: list[Callable[[Task], None]] = []


def register_task(task: Task) -> Task:
    """Add ``task`` to ``TASKS``; a different task under a taken name is a ``ValueError``."""
    existing = TASKS.get(task.name)
    if existing is not None and existing != task:
        raise ValueError(f"task '{task.name}' is already registered")
    TASKS[task.name] = task
    if existing is None:
        for subscriber in _subscribers:
            subscriber(task)
    return task


def discover_tasks() -> None:
    """Import every module of ``prefalign.tasks`` and every ``prefalign.tasks`` entry
    point once, so their tasks register."""
    import_submodules(_PACKAGE)
    import_entry_points(ENTRY_POINTS)


def on_register(subscriber: Callable[[Task], None]) -> None:
    """Call ``subscriber(task)`` for every task registered now and later."""
    discover_tasks()
    _subscribers.append(subscriber)
    for task in list(TASKS.values()):
        subscriber(task)


def task_names() -> list[str]:
    """Sorted names of every registered task."""
    discover_tasks()
    return sorted(TASKS)


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name is a ``ConfigError`` listing them."""
    discover_tasks()
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown task '{name}'; {hint}valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
