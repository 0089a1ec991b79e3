"""Preference pairs from expert decisions with controlled perturbations.

For an expert decision with remaining plan ``p_0, p_1, ..., p_n`` (``p_0`` is
chosen) and completed subgoals ``c_1..c_k``, the rejected subgoal is one of:

* ``wrong_object`` — same verb as ``p_0``, another argument that is not in the
  plan: another object of the scene the verb accepts, else the same type in a
  colour absent from the grid (``drop()`` has no argument, so no such pair);
* ``wrong_order`` — a subgoal out of sequence: a later plan step ``p_j`` with
  ``j >= 2`` (its precondition is not met yet), else a completed one (repeating it);
* ``omission`` — ``p_1``: the required intermediate ``p_0`` is skipped;
* ``wrong_action`` — another verb than ``p_0``'s on something in the scene
  (``goto``/``pickup``/``open`` of an object the verb accepts, ``drop()`` while
  carrying) that is neither in the plan nor a repeat: the step of another task
  (dropping the key where no box waits, picking up a key one should walk to).

The four candidate sets are disjoint, so a model's subgoal can be classified
by them (``Decision.classify``). Choices among several candidates use a random
generator seeded by (env_id, seed, step, type): the pairs are deterministic.
Every rejected subgoal is grammatical and differs from the chosen one; a pair
is kept only when its rejected subgoal fails the execution contract in that
state (a perturbation that happens to work — another object of the mission's
kind, a drop that is harmless — is no mistake to learn from).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from prefalign.errors import ConfigError
from prefalign.tasks.minigrid.context import build_prompt
from prefalign.tasks.minigrid.episodes import Episode, world_objects
from prefalign.tasks.minigrid.executor import execute
from prefalign.tasks.minigrid.expert import expert_plan
from prefalign.tasks.minigrid.grammar import (
    COLOURS,
    GOAL,
    PICKABLE_TYPES,
    Subgoal,
    format_subgoal,
    parse_subgoal,
)
from prefalign.tasks.minigrid.traces import expert_rollout

PERTURBATION_TYPES: tuple[str, ...] = ("wrong_object", "wrong_order", "omission", "wrong_action")
VERBS: tuple[str, ...] = ("goto", "pickup", "open", "drop")


def _accepts(verb: str, kind: str) -> bool:
    if verb == "pickup":
        return kind in PICKABLE_TYPES
    if verb == "open":
        return kind == "door"
    return True


class Decision:
    """The expert's decision in one state, and the perturbations around it."""

    def __init__(self, episode: Episode):
        self.plan = [format_subgoal(sg) for sg in expert_plan(episode)]
        self.completed = list(episode.completed)
        self.chosen = self.plan[0]
        chosen = parse_subgoal(self.chosen)
        objects = world_objects(episode)
        in_scene: list[str] = []
        swapped: list[str] = []
        if chosen.verb != "drop":
            for obj in objects:
                if _accepts(chosen.verb, obj.kind):
                    in_scene.append(format_subgoal(Subgoal(chosen.verb, obj.colour, obj.kind)))
            if chosen.target_type != GOAL:
                present = {(obj.colour, obj.kind) for obj in objects}
                swapped = [format_subgoal(Subgoal(chosen.verb, colour, chosen.target_type))
                           for colour in COLOURS if (colour, chosen.target_type) not in present]
        self.later_steps = _unique(c for c in self.plan[2:] if c not in self.plan[:2])
        self.repeats = _unique(c for c in reversed(self.completed)
                               if c not in self.plan)
        taken = set(self.plan) | set(self.repeats)
        self.wrong_object_in_scene = _unique(c for c in in_scene if c not in taken)
        self.wrong_object_swapped = _unique(c for c in swapped if c not in taken)
        other_verbs = [Subgoal(verb, obj.colour, obj.kind) for verb in VERBS
                       if verb not in ("drop", chosen.verb)
                       for obj in objects if _accepts(verb, obj.kind)]
        if chosen.verb != "drop" and episode.carried is not None:
            other_verbs.append(Subgoal("drop", None, None))
        self.wrong_action = _unique(c for c in map(format_subgoal, other_verbs)
                                    if c not in taken)

    def candidates(self, perturbation: str) -> list[str]:
        """All subgoals of one perturbation type for this decision."""
        if perturbation == "wrong_object":
            return self.wrong_object_in_scene + self.wrong_object_swapped
        if perturbation == "wrong_order":
            return self.later_steps + self.repeats
        if perturbation == "omission":
            return self.plan[1:2]
        if perturbation == "wrong_action":
            return self.wrong_action
        raise ConfigError(f"unknown perturbation {perturbation!r}; "
                          f"expected one of {', '.join(PERTURBATION_TYPES)}")

    def choose(self, perturbation: str, rng: random.Random) -> str | None:
        """One rejected subgoal of this type (scene objects before colour swaps,
        later steps before repeats), or ``None`` when the type does not apply."""
        if perturbation == "wrong_object":
            pool = self.wrong_object_in_scene or self.wrong_object_swapped
        elif perturbation == "wrong_order":
            pool = self.later_steps or self.repeats[:1]
        else:
            pool = self.candidates(perturbation)
        return rng.choice(pool) if pool else None

    def classify(self, subgoal_text: str) -> str | None:
        """The perturbation type a canonical subgoal falls in, or ``None``: ``p_1`` is an
        omission; a later plan step or a repeat is a wrong order; any other argument
        for the expert's verb is a wrong object, any other verb a wrong action (both
        also outside the candidate lists)."""
        if subgoal_text in self.plan[1:2]:
            return "omission"
        if subgoal_text in self.later_steps or subgoal_text in self.repeats:
            return "wrong_order"
        if subgoal_text in self.plan:
            return None
        same_verb = subgoal_text.split("(")[0] == self.chosen.split("(")[0]
        return "wrong_object" if same_verb else "wrong_action"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def perturbation_rng(env_id: str, seed: int, step: int, perturbation: str) -> random.Random:
    """The generator that picks the rejected subgoal of one decision and type."""
    return random.Random(f"{env_id}/{seed}/{step}/{perturbation}")


def preference_pairs(env_ids: Sequence[str], seeds: Iterable[int],
                     perturbations: Sequence[str] = PERTURBATION_TYPES) -> list[dict]:
    """``{prompt, chosen, rejected, metadata}`` for every expert decision and type.

    Completions are a space and the subgoal (as in ``sft_records``). ``metadata``
    holds env_id, seed, step, perturbation, the expert subgoal, and
    ``rejected_failure``: the failure type the rejected subgoal gets when
    executed in that state (``None`` if it happens to succeed).
    """
    for perturbation in perturbations:
        if perturbation not in PERTURBATION_TYPES:
            raise ConfigError(f"unknown perturbation {perturbation!r}; "
                              f"expected one of {', '.join(PERTURBATION_TYPES)}")
    seeds = list(seeds)
    pairs: list[dict] = []
    for env_id in env_ids:
        for seed in seeds:
            for item in expert_rollout(env_id, seed) or []:
                decision = Decision(item.episode)
                for perturbation in perturbations:
                    rng = perturbation_rng(env_id, seed, item.step, perturbation)
                    rejected = decision.choose(perturbation, rng)
                    if rejected is None:
                        continue
                    result = execute(item.episode.copy(), rejected)
                    if result.success:
                        continue
                    pairs.append({
                        "prompt": build_prompt(item.context),
                        "chosen": " " + item.subgoal,
                        "rejected": " " + rejected,
                        "metadata": {
                            "env_id": env_id, "seed": int(seed), "step": item.step,
                            "perturbation": perturbation, "expert_subgoal": item.subgoal,
                            "rejected_failure": result.failure.value,
                        },
                    })
    return pairs
