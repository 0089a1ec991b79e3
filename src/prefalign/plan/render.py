"""Memory sizes in and out: parse "80GB"/"80GiB", print a plan as a table."""

from __future__ import annotations

import re

from prefalign.errors import ConfigError
from prefalign.plan.advice import Fix
from prefalign.plan.planner import GB, MemoryPlan

_UNITS = {"": GB, "b": 1, "kb": 1e3, "mb": 1e6, "gb": GB, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> float:
    """Bytes in ``"80GB"``, ``"79.6 GiB"``, ``"512MB"``; a bare number means GB (10⁹)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(f"cannot read memory size '{text}'; write it like 80GB, 79.6GiB or "
                          f"512MB")
    return float(match.group(1)) * _UNITS[unit]


def gb(value: float) -> str:
    return f"{value / GB:,.2f} GB"


def _params(count: float) -> str:
    return f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.2f} M"


def render_plan(plan: MemoryPlan, device_bytes: float | None = None,
                fix: Fix | None = None) -> str:
    """A readable breakdown: the job, the per-device lines, the phases, the verdict."""
    r, shape = plan.request, plan.shape
    method = {"full": "full fine-tuning", "lora": f"LoRA r={r.lora_r} ({r.lora_targets})",
              "qlora": f"QLoRA r={r.lora_r} ({r.lora_targets})"}[r.method]
    batch = r.batch
    job = (f"job: {r.stage}, {method}, precision {plan.recipe.name}, {r.devices} device(s), "
           f"strategy {plan.sharding.name} ({plan.sharding.summary})")
    micro = (f"micro-batch per device: {batch.rows} rows × {batch.row_len} tokens, "
             f"{batch.completion_tokens} scored; grad_accum {r.grad_accum}; activation "
             f"checkpointing {'on' if r.checkpointing else 'off'}; reference: "
             f"{r.resolved_reference}")
    states = (f"trainable: {_params(plan.trainable_params)} parameters; model states "
              f"{plan.recipe.trainable:g} bytes per trainable parameter (weights "
              f"{plan.recipe.weight:g} + gradients {plan.recipe.grad:g} + optimizer "
              f"{plan.recipe.optimizer:g}) = "
              f"{gb(plan.trainable_params * plan.recipe.trainable)} before sharding")
    out = [f"model: {shape.name}: {_params(shape.params)} parameters ({shape.describe()})",
           job, micro, states, "", "per device:"]
    width = max(len(name) for name in plan.lines)
    out += [f"  {name:<{width}}  {gb(value):>12}" for name, value in plan.lines.items()]
    if plan.host:
        out.append("in CPU memory (per process):")
        out += [f"  {name:<{width}}  {gb(value):>12}" for name, value in plan.host.items()]
    out.append("phases (what is resident at once):")
    out += [f"  {name:<{width}}  {gb(value):>12}" for name, value in plan.phases.items()]
    out.append(f"  {'total (peak)':<{width}}  {gb(plan.total):>12}   ({plan.peak_phase})")
    out += [f"note: {note}" for note in plan.notes]
    if device_bytes is not None:
        out.append("")
        if plan.fits(device_bytes):
            out.append(f"fits in {gb(device_bytes)}: yes ({gb(device_bytes - plan.total)} to "
                       f"spare)")
        else:
            out.append(f"fits in {gb(device_bytes)}: no ({gb(plan.total - device_bytes)} over)")
            if fix is None:
                out.append("no change on the list makes it fit: use more devices, a smaller "
                           "model, or shorter sequences")
            else:
                out.append(f"cheapest change that fits ({gb(fix.plan.total)} peak): "
                           + "; then ".join(fix.summary))
    return "\n".join(out)


def plan_as_dict(plan: MemoryPlan, device_bytes: float | None = None,
                 fix: Fix | None = None) -> dict:
    """The plan as JSON-ready numbers (bytes)."""
    data = {
        "model": plan.shape.name, "parameters": plan.shape.params,
        "trainable_parameters": plan.trainable_params,
        "bytes_per_trainable_parameter": plan.bytes_per_trainable_param,
        "frozen_parameters": plan.frozen_params,
        "per_device": plan.lines, "host": plan.host, "phases": plan.phases,
        "peak_phase": plan.peak_phase, "total": plan.total, "notes": plan.notes,
    }
    if device_bytes is not None:
        data["device_memory"] = device_bytes
        data["fits"] = plan.fits(device_bytes)
        if fix is not None:
            data["cheapest_fix"] = {"changes": fix.summary, "total": fix.plan.total}
    return data
