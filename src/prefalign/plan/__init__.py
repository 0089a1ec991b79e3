"""Memory planner: per-device memory of a training job before it is launched.

``load_shape``/``llama_shape`` describe the model, ``plan_memory`` adds up the
per-device breakdown of a ``PlanRequest``, ``cheapest_fix`` finds the cheapest
change that makes it fit, and ``plan.measure`` checks the plan against a real
run. The arithmetic and its sources are in the docstrings of ``precision``,
``strategies`` and ``activations``, and in docs/memory.md.
"""

from prefalign.plan.advice import Fix, cheapest_fix
from prefalign.plan.planner import GB, MemoryPlan, PlanRequest, plan_memory
from prefalign.plan.render import parse_size, plan_as_dict, render_plan
from prefalign.plan.shape import ModelShape, llama_shape, load_shape

__all__ = ["GB", "Fix", "MemoryPlan", "ModelShape", "PlanRequest", "cheapest_fix",
           "llama_shape", "load_shape", "parse_size", "plan_as_dict", "plan_memory",
           "render_plan"]
