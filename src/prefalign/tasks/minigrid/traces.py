"""Expert traces, supervised records, and seed splits that cannot leak.

A trace step records the state the expert saw and what it chose:
``{"env_id", "seed", "step", "context", "expert_subgoal"}``. Only whole episodes
the expert solves through the executor are kept. Seeds identify episodes, so
the train, validation and test splits are disjoint seed ranges, and
``check_split_leakage`` refuses any (env_id, seed) found in two splits.

Disjoint seeds do not make disjoint states: small rooms have few layouts, so
many evaluation states also occur, word for word, in training episodes (with
1000 training seeds, every DoorKey-5x5 test state did). ``context_overlap``
measures this so that reports can state it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prefalign.errors import ConfigError, DataError
from prefalign.tasks.minigrid.context import build_prompt, describe_state
from prefalign.tasks.minigrid.episodes import Episode, make_episode
from prefalign.tasks.minigrid.executor import execute
from prefalign.tasks.minigrid.expert import expert_subgoal

MAX_EXPERT_SUBGOALS = 8  # longer than any expert plan of the supported environments


class SplitLeakageError(DataError):
    """One episode (env_id, seed) appears in two splits."""


@dataclass
class ExpertStep:
    """One expert decision: the episode as it was before the subgoal ran."""

    step: int
    episode: Episode
    context: str
    subgoal: str


def expert_rollout(env_id: str, seed: int) -> list[ExpertStep] | None:
    """Replay the expert through the executor; its decisions, or ``None`` if it fails."""
    episode = make_episode(env_id, seed)
    steps: list[ExpertStep] = []
    for index in range(MAX_EXPERT_SUBGOALS):
        if episode.mission_accomplished:
            return steps
        subgoal = expert_subgoal(episode)
        steps.append(ExpertStep(index, episode.copy(), describe_state(episode), subgoal))
        if not execute(episode, subgoal).success:
            return None
    return steps if episode.mission_accomplished else None


def generate_traces(env_ids: Sequence[str], seeds: Iterable[int]) -> list[dict]:
    """Trace steps of every episode (env_id x seed) the expert solves, in order."""
    seeds = list(seeds)
    records: list[dict] = []
    for env_id in env_ids:
        for seed in seeds:
            for item in expert_rollout(env_id, seed) or []:
                records.append({"env_id": env_id, "seed": int(seed), "step": item.step,
                                "context": item.context, "expert_subgoal": item.subgoal})
    return records


def sft_records(traces: Iterable[Mapping]) -> list[dict]:
    """``{"prompt", "completion"}`` rows; the completion is a space and the subgoal."""
    return [{"prompt": build_prompt(trace["context"]), "completion": " " + trace["expert_subgoal"]}
            for trace in traces]


@dataclass(frozen=True)
class SeedSplits:
    """Disjoint, consecutive seed ranges: train, then validation, then test."""

    train: range
    validation: range
    test: range

    def as_dict(self) -> dict[str, range]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def split_seeds(n_train: int, n_validation: int, n_test: int, start: int = 0) -> SeedSplits:
    """Seeds ``[start, start+n_train)`` for training, the next ``n_validation`` for
    validation and the next ``n_test`` for test; the same ranges for every environment."""
    for name, count in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
        if count < 0:
            raise ConfigError(f"{name} must be >= 0, got {count}")
    if start < 0:
        raise ConfigError(f"start must be >= 0, got {start}")
    validation_start = start + n_train
    test_start = validation_start + n_validation
    splits = SeedSplits(range(start, validation_start), range(validation_start, test_start),
                        range(test_start, test_start + n_test))
    # Every environment uses the same seeds, so disjoint seeds mean disjoint episodes.
    check_split_leakage({name: [("every environment", seed) for seed in seeds]
                         for name, seeds in splits.as_dict().items()})
    return splits


def context_overlap(train: Iterable[Mapping], evaluation: Iterable[Mapping]) -> dict:
    """How many evaluation trace steps have a context that also occurs in ``train``:
    ``{"shared": k, "total": n, "rate": k / n}`` (``rate`` is ``None`` when n = 0)."""
    seen = {record["context"] for record in train}
    contexts = [record["context"] for record in evaluation]
    shared = sum(context in seen for context in contexts)
    return {"shared": shared, "total": len(contexts),
            "rate": shared / len(contexts) if contexts else None}


def _episode_key(item: Mapping | tuple) -> tuple[str, int]:
    if isinstance(item, tuple):
        return str(item[0]), int(item[1])
    source = item.get("metadata", item)
    if "env_id" not in source or "seed" not in source:
        raise DataError("record has no env_id/seed (at the top level or in 'metadata')",
                        field="env_id")
    return str(source["env_id"]), int(source["seed"])


def check_split_leakage(splits: Mapping[str, Iterable[Mapping | tuple]]) -> None:
    """Raise ``SplitLeakageError`` if an episode (env_id, seed) appears in two splits.

    Items are ``(env_id, seed)`` tuples or records with ``env_id``/``seed`` at the
    top level (traces) or under ``metadata`` (preference pairs).
    """
    owner: dict[tuple[str, int], str] = {}
    for name, items in splits.items():
        for item in items:
            key = _episode_key(item)
            if owner.setdefault(key, name) != name:
                raise SplitLeakageError(f"split leakage: episode ({key[0]}, seed {key[1]}) is in "
                                        f"both {owner[key]!r} and {name!r}")
