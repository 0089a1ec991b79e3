"""Held-out compositions: missions whose combination of attributes training never saw.

An episode's composition is what its mission combines, per task family:

* DoorKey, Unlock: the colour of the door (and of its key);
* UnlockPickup, BlockedUnlockPickup: the door's colour and the object to pick up;
* MultiRoom: the colours of the doors in the order the rooms are entered;
* BabyAI go-to: the object named (colour and type);
* BabyAI sequences: the mission's structure and objects ("open the red door
  after you open the blue door" is ``after(open red door, open blue door)``).

A composition is held out when a stable hash of (family, composition) falls in
the held-out share: ``sha256(family/composition) mod 10⁶ < share · 10⁶``. The
rule depends on nothing but the composition, so every seed of a held-out
composition is held out, in every split: training never sees its mission,
state for state, by construction.
"""

from __future__ import annotations

import hashlib

from prefalign.tasks.minigrid.episodes import Episode, mission_object, world_objects

_SCALE = 1_000_000


def composition(episode: Episode) -> str:
    """The composition of ``episode``'s mission (see the module docstring)."""
    family = episode.family
    if family in ("doorkey", "unlock"):
        door = next(obj for obj in world_objects(episode) if obj.kind == "door")
        return f"{door.colour} door"
    if family in ("unlockpickup", "blockedunlockpickup"):
        door = next(obj for obj in world_objects(episode) if obj.kind == "door")
        target = mission_object(episode)
        return f"{door.colour} door, {target.colour} {target.kind}"
    if family == "multiroom":
        grid = episode.env.grid
        return ", ".join(grid.get(*room.entryDoorPos).color for room in episode.env.rooms[1:])
    if family == "goto":
        target = mission_object(episode)
        return f"{target.colour} {target.kind}"
    return _instruction(episode.env.instrs)


def _instruction(instruction) -> str:
    parts = [getattr(instruction, name) for name in ("instr_a", "instr_b")
             if hasattr(instruction, name)]
    if parts:
        name = type(instruction).__name__.removesuffix("Instr").lower()
        return f"{name}({', '.join(_instruction(part) for part in parts)})"
    desc = instruction.desc
    verb = type(instruction).__name__.removesuffix("Instr").lower()
    return f"{verb} {desc.color or 'any'} {desc.type or 'object'}"


def is_held_out(family: str, key: str, share: float) -> bool:
    """Whether composition ``key`` of ``family`` is in the held-out share."""
    digest = hashlib.sha256(f"{family}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SCALE < share * _SCALE
