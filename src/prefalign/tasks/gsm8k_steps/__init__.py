"""GSM8K with step-level labels: which step of a worked solution goes wrong first.

``steps`` parses a worked solution into steps and checks each one (exact
arithmetic of its calculator annotations, operands the question or an earlier
step supplies); ``edits`` rewrites annotations; ``perturb`` makes wrong
solutions whose first wrong step is known, the critical ones keeping the correct
final answer; ``data`` builds the labelled records. The ``gsm8k_steps`` task
makes them as its ``steps`` records (``gsm8k_steps:path=FOLDER&split=train&n=500``)
and scores completions with the ``gsm8k`` final-answer verifier. It reads no
source by itself (``reads=None``), so a GSM8K folder stays the ``gsm8k`` task's.
"""

from prefalign.tasks.base import Task
from prefalign.tasks.gsm8k import gsm8k_verifier
from prefalign.tasks.gsm8k_steps.data import build_process_records, content_key, process_records
from prefalign.tasks.gsm8k_steps.perturb import (
    CRITICAL,
    PERTURBATIONS,
    Perturbed,
    step_labels,
)
from prefalign.tasks.gsm8k_steps.steps import (
    Step,
    UncheckableSolution,
    check_steps,
    evaluate,
    first_wrong_step,
    parse_solution,
    reference_values,
    render_solution,
)
from prefalign.tasks.registry import register_task

TASK = register_task(Task(
    name="gsm8k_steps",
    makers={"steps": process_records},
    content_key=content_key,
    verifier=gsm8k_verifier,
    reads=None,
    description="GSM8K solutions with step labels: references and perturbations whose "
                "first wrong step is known",
))

__all__ = ["CRITICAL", "PERTURBATIONS", "TASK", "Perturbed", "Step", "UncheckableSolution",
           "build_process_records", "check_steps", "content_key", "evaluate",
           "first_wrong_step", "parse_solution", "process_records", "reference_values",
           "render_solution", "step_labels"]
