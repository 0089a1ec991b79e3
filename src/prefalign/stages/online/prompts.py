"""Prompt sets of the online stages, and the check that rewards can read them.

A source is a prompt file (``{"prompt", ...verifier fields}`` rows), a
``builtin:`` or ``hf:`` source, a GSM8K file or folder (``{"question",
"answer"}`` rows, see ``prefalign.data.gsm8k``), or a generated task:

* ``countdown:n=2000&seed=0&numbers=3&max_number=9&max_target=20&style=short`` —
  Countdown problems (``prefalign.envs.countdown``); ``style=short`` states
  the problem in one line, with the rule and the answer format (one example) in
  the system message instead of the model's default one;
* ``minigrid:env=MiniGrid-DoorKey-5x5-v0,BabyAI-GoToLocalS6N2-v0&seeds=0-99`` —
  one prompt per expert decision state, with ``env_id``, ``seed``, ``step``.

Held-out prompts come from ``data.eval`` or a split of the training set by
prompt (by episode for MiniGrid, whose states repeat across seeds).
``check_reward_fields`` refuses a row that lacks a field a reward reads, before
any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from prefalign.config.sections import DataConfig
from prefalign.data.gsm8k import load_gsm8k, looks_like_gsm8k
from prefalign.data.sources import load_source
from prefalign.data.split import check_leakage, split_records
from prefalign.errors import DataError

COUNTDOWN_SYSTEM = ("Combine the numbers with + - * / to reach the target, each number at most "
                    "once. Reply as <answer>expression</answer>, e.g. <answer>(1 + 2) * 3"
                    "</answer>.")


def _params(source: str, spec: str, defaults: dict[str, str]) -> dict[str, str]:
    params = dict(defaults)
    for key, value in parse_qsl(spec, keep_blank_values=True):
        if key not in defaults:
            raise DataError(f"unknown parameter '{key}'; valid: {', '.join(defaults)}",
                            file=source)
        params[key] = value
    return params


def _integer(source: str, params: dict[str, str], key: str) -> int:
    value = params[key]
    if not value.lstrip("-").isdigit():
        raise DataError(f"parameter '{key}' must be an integer, got '{value}'", file=source)
    return int(value)


def countdown_short_prompt(numbers: list[int], target: int) -> list[dict]:
    """A two-message Countdown prompt: the rule as the system message, the problem as the user's."""
    return [{"role": "system", "content": COUNTDOWN_SYSTEM},
            {"role": "user", "content": f"Numbers: {' '.join(map(str, numbers))}. "
                                        f"Target: {target}."}]


def _countdown(source: str, spec: str) -> list[dict]:
    from prefalign.envs.countdown import generate_problems

    params = _params(source, spec, {"n": "1000", "seed": "0", "numbers": "3",
                                    "max_number": "20", "max_target": "100", "style": "full"})
    if params["style"] not in ("full", "short"):
        raise DataError(f"style must be 'full' or 'short', got '{params['style']}'", file=source)
    problems = generate_problems(_integer(source, params, "n"), _integer(source, params, "seed"),
                                 num_numbers=_integer(source, params, "numbers"),
                                 max_number=_integer(source, params, "max_number"),
                                 max_target=_integer(source, params, "max_target"))
    if params["style"] == "short":
        for problem in problems:
            problem["prompt"] = countdown_short_prompt(problem["numbers"], problem["target"])
    return problems


def _seed_range(source: str, text: str) -> range:
    first, _, last = text.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise DataError(f"seeds must be 'START-END' or 'SEED', got '{text}'", file=source)
    return range(int(first), int(last or first) + 1)


def _minigrid(source: str, spec: str) -> list[dict]:
    from prefalign.envs.minigrid import build_prompt, generate_traces

    params = _params(source, spec, {"env": "MiniGrid-DoorKey-5x5-v0", "seeds": "0-99"})
    traces = generate_traces(params["env"].split(","), _seed_range(source, params["seeds"]))
    return [{"prompt": build_prompt(t["context"]), "env_id": t["env_id"], "seed": t["seed"],
             "step": t["step"], "expert_subgoal": t["expert_subgoal"]} for t in traces]


TASKS: dict[str, Callable[[str, str], list[dict]]] = {"countdown": _countdown,
                                                      "minigrid": _minigrid}


def load_prompt_source(source: str) -> list[dict]:
    """Prompt records from any source described in the module docstring."""
    task, _, spec = source.partition(":")
    if task in TASKS:
        records = TASKS[task](source, spec)
    elif looks_like_gsm8k(source):
        records = load_gsm8k(source)
    else:
        records = load_source(source, "prompt")
    if not records:
        raise DataError("no prompts", file=source)
    return records


def _episode_split(records: list[dict]) -> bool:
    return all("env_id" in r and "seed" in r for r in records)


def load_prompt_sets(data: DataConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """Training and held-out prompts (see the module docstring)."""
    train = load_prompt_source(data.train)
    by_episode = _episode_split(train)
    if data.eval is not None:
        held_out = load_prompt_source(data.eval)
        if by_episode and _episode_split(held_out):
            from prefalign.envs.minigrid import check_split_leakage

            check_split_leakage({"train": train, "eval": held_out})
        else:
            check_leakage({"train": train, "eval": held_out})
    elif data.eval_fraction > 0:
        if by_episode:
            for record in train:
                record["episode"] = f"{record['env_id']}/{record['seed']}"
        parts = split_records(train, {"train": 1 - data.eval_fraction,
                                      "eval": data.eval_fraction}, seed,
                              key="episode" if by_episode else "prompt")
        train, held_out = parts["train"], parts["eval"]
    else:
        held_out = []
    if data.max_examples is not None:
        train = train[: data.max_examples]
    if not train:
        raise DataError("no training prompts", file=data.train)
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
