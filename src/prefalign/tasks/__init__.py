"""Tasks: problem families with a programmatic check, behind one contract.

A ``Task`` (``base``) gives record makers per kind, a content key (what makes
two records the same problem; held-out sets are split by it), a verifier (the
reward of online stages and the pass rate of evaluations both come from it),
optional metrics and an optional pipeline. ``TASKS`` (``registry``) holds them:
arithmetic, countdown, gsm8k and minigrid, one module or package each, each
registering itself. ``load_source`` (``sources``) loads records of any kind from
any source: a task's source string, a file or ``hf:NAME``.
"""

from prefalign.tasks.base import Task, Verifier, passes, prompt_key
from prefalign.tasks.registry import TASKS, get_task, on_register, register_task, task_names
from prefalign.tasks.sources import content_key, load_source, source_task

__all__ = ["TASKS", "Task", "Verifier", "content_key", "get_task", "load_source",
           "on_register", "passes", "prompt_key", "register_task", "source_task", "task_names"]
