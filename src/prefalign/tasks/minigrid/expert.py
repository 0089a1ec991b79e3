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
* BlockedUnlockPickup: UnlockPickup whose door has a ball in front of it: while
  the ball blocks the door, free the hands (``drop()``), ``pickup(C ball)`` and
  ``drop()`` it elsewhere (the executor never drops in a doorway), then as
  UnlockPickup.
* MultiRoom: ``open(C door)`` for every door still shut along the chain of
  rooms, in the order the rooms are entered, then ``goto(goal)``.
* BabyAI go-to: ``goto(C T)`` of the matching object nearest by path length.
* BabyAI sequences (OpenDoorsOrder: "open X, then open Y", "open X after you
  open Y"): the instruction tree's leaves not yet done, in the order it asks
  for them — ``A, then B`` is A then B, ``A after you B`` is B then A, ``A and
  B`` is A then B — read from the tree's own done flags, which the environment
  updates at every action. A leaf is ``open(C door)``, ``goto(C T)`` (nearest
  match) or ``pickup(C T)``.

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


def door_blocker(episode: Episode, door: WorldObject) -> WorldObject | None:
    """The object on the cell west of ``door`` (BlockedUnlockPickup's ball), if any."""
    x, y = door.position
    cell = episode.env.grid.get(x - 1, y)
    if cell is None or cell.type not in ("key", "ball", "box"):
        return None
    return WorldObject(cell.color, cell.type, (x - 1, y))


def _key_and_door(episode: Episode, carried: tuple[str, str] | None
                  ) -> tuple[list[Subgoal], tuple[str, str] | None]:
    """Subgoals that open the (single) door, and what is carried afterwards."""
    door = next(obj for obj in world_objects(episode) if obj.kind == "door")
    if door.state == "open":
        return [], carried
    steps: list[Subgoal] = []
    blocker = door_blocker(episode, door) if episode.family == "blockedunlockpickup" else None
    if blocker is not None:
        if carried is not None:
            steps.append(DROP)
        steps += [Subgoal("pickup", blocker.colour, blocker.kind), DROP]
        carried = None
    elif episode.family == "blockedunlockpickup" and carried is not None \
            and carried[1] != "key":
        # The blocker is in the hands: put it down out of the doorway.
        steps.append(DROP)
        carried = None
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
    if family == "multiroom":
        return _multiroom_plan(episode)
    if family == "sequence":
        return _instruction_plan(episode, episode.env.instrs)
    description = mission_object(episode)
    if family in ("unlockpickup", "blockedunlockpickup"):
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


def _multiroom_plan(episode: Episode) -> list[Subgoal]:
    grid = episode.env.grid
    steps = []
    for room in episode.env.rooms[1:]:
        door = grid.get(*room.entryDoorPos)
        if door is not None and door.type == "door" and not door.is_open:
            steps.append(Subgoal("open", door.color, "door"))
    return steps + [Subgoal("goto", None, GOAL)]


def _leaf_subgoal(episode: Episode, instruction) -> Subgoal:
    from minigrid.envs.babyai.core.verifier import GoToInstr, OpenInstr, PickupInstr

    desc = instruction.desc
    if isinstance(instruction, OpenInstr):
        return Subgoal("open", desc.color, "door")
    target = nearest_match(episode, ObjectDescription(desc.color, desc.type),
                           [obj for obj in world_objects(episode) if obj.kind != GOAL])
    if isinstance(instruction, (GoToInstr, PickupInstr)) and target is not None:
        verb = "goto" if isinstance(instruction, GoToInstr) else "pickup"
        return Subgoal(verb, target.colour, target.kind)
    raise PrefalignError(f"{episode.env_id}: no subgoal for the instruction "
                         f"{type(instruction).__name__}")


def _instruction_plan(episode: Episode, instruction) -> list[Subgoal]:
    """The leaves of a BabyAI instruction tree still to do, in the order asked for."""
    from minigrid.envs.babyai.core.verifier import AfterInstr, AndInstr, BeforeInstr

    def done(flag) -> bool:
        return flag == "success"

    if isinstance(instruction, BeforeInstr):
        first = [] if done(instruction.a_done) else _instruction_plan(episode, instruction.instr_a)
        return first + _instruction_plan(episode, instruction.instr_b)
    if isinstance(instruction, AfterInstr):
        first = [] if done(instruction.b_done) else _instruction_plan(episode, instruction.instr_b)
        return first + _instruction_plan(episode, instruction.instr_a)
    if isinstance(instruction, AndInstr):
        parts = [(instruction.a_done, instruction.instr_a),
                 (instruction.b_done, instruction.instr_b)]
        return [step for flag, part in parts if not done(flag)
                for step in _instruction_plan(episode, part)]
    return [_leaf_subgoal(episode, instruction)]


def expert_subgoal(episode: Episode) -> str:
    """The canonical next subgoal (the first step of ``expert_plan``)."""
    plan = expert_plan(episode)
    if not plan:
        raise NoExpertSubgoal(
            f"{episode.env_id} seed {episode.seed}: the mission is already accomplished")
    return format_subgoal(plan[0])
