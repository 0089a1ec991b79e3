"""The MiniGrid subgoal task: prompt records, content key, verifier, failure shares.

Source: ``minigrid:env=MiniGrid-DoorKey-5x5-v0,BabyAI-GoToLocalS6N2-v0&seeds=0-99``
— one prompt per expert decision state, with ``env_id``, ``seed``, ``step`` and
``expert_subgoal``.

Small rooms have few layouts, so the same state recurs across seeds (and within
an episode's neighbours); two records are the same problem when their state
text is the same. The content key is the prompt (the instruction and the state
text), so a held-out state never occurs word for word in training. The staged
pipeline (``prefalign pipeline``) builds its own seed-split data and excludes
held-out states there.

The gymnasium environments load on first use, not when the task registers.
"""

from __future__ import annotations

from functools import lru_cache

from prefalign.errors import DataError
from prefalign.tasks.base import Task, prompt_key
from prefalign.tasks.registry import register_task


def seed_range(text: str) -> range:
    """``"0-99"`` → ``range(0, 100)``; ``"7"`` → ``range(7, 8)``."""
    first, _, last = text.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise ValueError(f"seeds must be 'START-END' or 'SEED', got '{text}'")
    return range(int(first), int(last or first) + 1)


def prompt_records(env: str = "MiniGrid-DoorKey-5x5-v0", seeds: str = "0-99") -> list[dict]:
    """One prompt per expert decision state of each (environment, seed) episode."""
    from prefalign.tasks.minigrid.context import build_prompt
    from prefalign.tasks.minigrid.traces import generate_traces

    traces = generate_traces(env.split(","), seed_range(seeds))
    return [{"prompt": build_prompt(t["context"]), "env_id": t["env_id"], "seed": t["seed"],
             "step": t["step"], "expert_subgoal": t["expert_subgoal"]} for t in traces]


@lru_cache(maxsize=4096)
def _expert_states(env_id: str, seed: int):
    """The expert's decision states of one episode (``None`` when the expert fails)."""
    from prefalign.tasks.minigrid.traces import expert_rollout

    return expert_rollout(env_id, seed)


def _episode_at(record: dict):
    """A copy of the episode in the record's state: the expert replayed on episode
    (``env_id``, ``seed``) for ``step`` subgoals."""
    env_id, seed, step = str(record["env_id"]), int(record["seed"]), int(record["step"])
    states = _expert_states(env_id, seed)
    if states is None or not 0 <= step < len(states):
        raise DataError(f"minigrid verifier: episode ({env_id}, seed {seed}) has no expert "
                        f"state at step {step}", field="step")
    return states[step].episode.copy()


def _first_line(completion: str) -> str:
    lines = completion.strip().splitlines()
    return lines[0].strip() if lines else ""


def _check_credit(credit: float) -> None:
    if not 0.0 <= credit < 1.0:
        raise ValueError(f"format_credit must be in [0, 1), got {credit}")


class MiniGridVerifier:
    """The state is rebuilt by replaying the expert on episode (``env_id``, ``seed``)
    for ``step`` subgoals; the completion's first line runs there through the
    executor: 1 when it meets the execution contract, else ``format_credit`` when it
    parses, else 0."""

    name = "minigrid"
    required_fields = ("env_id", "seed", "step")

    def __init__(self, format_credit: float = 0.0):
        _check_credit(format_credit)
        self.format_credit = format_credit

    def score(self, completion: str, record: dict) -> float:
        from prefalign.tasks.minigrid.executor import execute
        from prefalign.tasks.minigrid.grammar import SubgoalParseError, parse_subgoal

        subgoal = _first_line(completion)
        if execute(_episode_at(record), subgoal).success:
            return 1.0
        try:
            parse_subgoal(subgoal)
        except SubgoalParseError:
            return 0.0
        return self.format_credit


def minigrid_verifier(format_credit: float = 0.0) -> MiniGridVerifier:
    """``MiniGridVerifier(format_credit)``."""
    return MiniGridVerifier(format_credit)


def failure_shares(records: list[dict], completions: list[str]) -> dict:
    """The share of completions that succeed, and that fail per failure type of the
    execution contract (``parse_error``, ``no_such_object``, ``unreachable``, ...)."""
    from prefalign.tasks.minigrid.executor import execute
    from prefalign.tasks.minigrid.metrics import ERROR_NAMES

    counts = dict.fromkeys(("success", *ERROR_NAMES.values()), 0)
    for record, completion in zip(records, completions):
        result = execute(_episode_at(record), _first_line(completion))
        counts["success" if result.success else ERROR_NAMES[result.failure]] += 1
    total = max(len(completions), 1)
    return {f"outcome/{name}": count / total for name, count in counts.items()}


TASK = register_task(Task(
    name="minigrid",
    makers={"prompt": prompt_records},
    content_key=prompt_key,
    verifier=minigrid_verifier,
    metrics=failure_shares,
    pipeline="minigrid",
    description="MiniGrid/BabyAI: propose the next subgoal for a textual state",
))
