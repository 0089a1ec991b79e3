"""The deterministic expert: the canonical plan of subgoals from any state.

The plan is a pure function of the current state (door states, what the agent
carries, where it stands), not of the history, so the expert can take over
from any state a policy leaves behind. Per task family:

* key-and-door (DoorKey, Unlock, and the first half of UnlockPickup): if the
  door is not open — when it is locked and the matching key is not carried,
  ``drop()`` whatever is carried, then ``pickup(C key)``; then ``open(C door)``.
* DoorKey: the key-and-door steps, then ``goto(goal)``.
* Unlock: the key-and-door steps (opening the door is the mission).
* UnlockPickup: the key-and-door steps, then ``drop()`` if anything is carried
  (the agent carries one object at a time), then ``pickup(C box)``.
* BabyAI go-to: ``goto(C T)`` of the matching object nearest by path length.

The plan is empty once the mission is accomplished. Its length is the progress
measure the executor uses: a subgoal makes progress when it shortens the plan.
"""

from __future__ import annotations

from prefalign.errors import PrefalignError
from prefalign.tasks.minigrid.episodes import (
    Episode,
    ObjectDescription,
    WorldObject,
    mission_object,
    world_objects,
)
from prefalign.tasks.minigrid.grammar import GOAL, Subgoal, format_subgoal
from prefalign.tasks.minigrid.navigation import actions_to_face

DROP = Subgoal("drop")


class NoExpertSubgoal(PrefalignError):
    """Asked for the next subgoal of an episode whose mission is already accomplished."""


def _key_and_door(episode: Episode, carried: tuple[str, str] | None
                  ) -> tuple[list[Subgoal], tuple[str, str] | None]:
    """Subgoals that open the (single) door, and what is carried afterwards."""
    door = next(obj for obj in world_objects(episode) if obj.kind == "door")
    if door.state == "open":
        return [], carried
    steps: list[Subgoal] = []
    key = (door.colour, "key")
    if door.state == "locked" and carried != key:
        if carried is not None:
            steps.append(DROP)
        steps.append(Subgoal("pickup", door.colour, "key"))
        carried = key
    steps.append(Subgoal("open", door.colour, "door"))
    return steps, carried


def nearest_match(episode: Episode, description: ObjectDescription,
                  candidates: list[WorldObject]) -> WorldObject | None:
    """The matching object reachable by the fewest actions (first in row-major order
    on ties, or when none is reachable); ``None`` when nothing matches."""
    matching = [obj for obj in candidates if description.matches(obj.colour, obj.kind)]
    if not matching:
        return None
    start = (*episode.agent_position, episode.agent_direction)
    best, best_cost = matching[0], None
    for obj in matching:
        path = actions_to_face(episode.env, start, [obj.position])
        if path is not None and (best_cost is None or len(path) < best_cost):
            best, best_cost = obj, len(path)
    return best


def expert_plan(episode: Episode) -> list[Subgoal]:
    """The canonical remaining subgoals from the current state (empty when done)."""
    if episode.mission_accomplished:
        return []
    family = episode.family
    carried = episode.carried()
    if family == "doorkey":
        steps, _ = _key_and_door(episode, carried)
        return steps + [Subgoal("goto", None, GOAL)]
    if family == "unlock":
        return _key_and_door(episode, carried)[0]
    description = mission_object(episode)
    if family == "unlockpickup":
        steps, carried = _key_and_door(episode, carried)
        if carried is not None:
            steps.append(DROP)
        return steps + [Subgoal("pickup", description.colour, description.kind)]
    # family == "goto"
    objects = [obj for obj in world_objects(episode) if obj.kind != GOAL]
    # A matching object stays on the grid: picking it up means facing it first,
    # which already accomplishes a go-to mission.
    target = nearest_match(episode, description, objects)
    return [Subgoal("goto", target.colour, target.kind)]


def expert_subgoal(episode: Episode) -> str:
    """The canonical next subgoal (the first step of ``expert_plan``)."""
    plan = expert_plan(episode)
    if not plan:
        raise NoExpertSubgoal(
            f"{episode.env_id} seed {episode.seed}: the mission is already accomplished")
    return format_subgoal(plan[0])
