"""Prompt sets of the online stages, and the check that rewards can read them.

A source is anything ``prefalign.tasks.load_source`` reads as prompt records: a
prompt file (``{"prompt", ...verifier fields}`` rows), ``hf:NAME``, a task's
source string (``builtin:arithmetic?n=600``,
``countdown:n=2000&seed=0&numbers=3&max_number=9&max_target=20&style=short``,
``minigrid:env=MiniGrid-DoorKey-5x5-v0&seeds=0-99``) or a GSM8K file or folder.

Held-out prompts come from ``data.eval`` or a split of the training set by the
task's content key (``prefalign.tasks``: Countdown by the multiset of numbers
and the target, MiniGrid by state text, arithmetic and GSM8K by problem; the
prompt for a plain file), so no held-out problem is a training problem in
another form. Both ways are checked for leakage by the same key. A weighted
mixture of sources is split source by source, then mixed.
``check_reward_fields`` refuses a row that lacks a field a reward reads, before
any model is loaded.
"""

from __future__ import annotations

from prefalign.config.sections import DataConfig
from prefalign.errors import DataError
from prefalign.stages.common import load_train_eval
from prefalign.tasks import load_source


def load_prompt_source(source: str) -> list[dict]:
    """Prompt records from any source described in the module docstring."""
    records = load_source(source, "prompt")
    if not records:
        raise DataError("no prompts", file=source)
    return records


def load_prompt_sets(data: DataConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """Training and held-out prompts, content-disjoint (see the module docstring); a
    weighted mixture in ``data.train`` is mixed as ``stages.common.load_train_eval`` says."""
    train, held_out = load_train_eval(data, "prompt", seed)
    if data.eval is not None and not held_out:
        raise DataError("no prompts", file=data.eval)
    return train, held_out


def check_reward_fields(required: tuple[str, ...], named: dict[str, list[dict]]) -> None:
    """Refuse the first row (of any named set) that lacks a required field."""
    for source, records in named.items():
        for number, record in enumerate(records, start=1):
            for field in required:
                if field not in record:
                    present = ", ".join(sorted(record)) or "none"
                    raise DataError(f"the reward needs field '{field}' in every prompt row "
                                    f"(record {number} has: {present})", file=source,
                                    field=field)
