"""Supported environments, episodes identified by (environment id, seed), and world queries.

An ``Episode`` wraps one MiniGrid environment reset with a seed, and keeps what
the subgoal layer needs beside it: the subgoals completed so far, the low-level
actions taken, the reward collected and whether the environment has ended.
``make_episode(env_id, seed)`` is deterministic: the same pair always gives the
same grid, agent and mission.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field

import gymnasium as gym
import minigrid  # noqa: F401  (importing registers the MiniGrid and BabyAI environments)
from minigrid.minigrid_env import MiniGridEnv

from prefalign.errors import PrefalignError
from prefalign.tasks.minigrid.grammar import COLOURS, GOAL, OBJECT_TYPES

# Environment id -> task family; the family selects the expert's plan.
ENVIRONMENTS: dict[str, str] = {
    "MiniGrid-DoorKey-5x5-v0": "doorkey",
    "MiniGrid-DoorKey-6x6-v0": "doorkey",
    "MiniGrid-DoorKey-8x8-v0": "doorkey",
    "MiniGrid-Unlock-v0": "unlock",
    "MiniGrid-UnlockPickup-v0": "unlockpickup",
    "BabyAI-GoToLocalS6N2-v0": "goto",
    "BabyAI-GoToLocalS8N4-v0": "goto",
    "MiniGrid-BlockedUnlockPickup-v0": "blockedunlockpickup",
    "MiniGrid-MultiRoom-N2-S4-v0": "multiroom",
    "MiniGrid-MultiRoom-N4-S5-v1": "multiroom",
    "BabyAI-OpenDoorsOrderN2-v0": "sequence",
    "BabyAI-OpenDoorsOrderN4-v0": "sequence",
}

HEADINGS: tuple[str, ...] = ("east", "south", "west", "north")  # MiniGrid agent_dir 0..3


class UnknownEnvironmentError(PrefalignError):
    """An environment id outside ``ENVIRONMENTS``."""

    def __init__(self, env_id: str):
        self.env_id = env_id
        super().__init__(f"unknown environment {env_id!r}; supported: {', '.join(ENVIRONMENTS)}")


@dataclass(frozen=True)
class WorldObject:
    """An object on the grid: ``kind`` is a grammar type or ``"goal"``; ``state`` is
    ``"locked"``, ``"closed"`` or ``"open"`` for doors and ``None`` otherwise."""

    colour: str | None
    kind: str
    position: tuple[int, int]
    state: str | None = None

    @property
    def name(self) -> str:
        return GOAL if self.kind == GOAL else f"{self.colour} {self.kind}"


@dataclass
class Episode:
    """One seeded episode of a supported environment and its subgoal-level history."""

    env_id: str
    seed: int
    env: MiniGridEnv
    completed: list[str] = field(default_factory=list)
    actions_taken: int = 0
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False

    @property
    def family(self) -> str:
        return ENVIRONMENTS[self.env_id]

    @property
    def over(self) -> bool:
        """The environment has ended (mission done, failed, or out of time)."""
        return self.terminated or self.truncated

    @property
    def mission_accomplished(self) -> bool:
        """The environment ended the episode with a positive reward."""
        return self.terminated and self.reward > 0

    @property
    def agent_position(self) -> tuple[int, int]:
        x, y = self.env.agent_pos
        return int(x), int(y)

    @property
    def agent_direction(self) -> int:
        return int(self.env.agent_dir)

    @property
    def front_position(self) -> tuple[int, int]:
        x, y = self.env.front_pos
        return int(x), int(y)

    def carried(self) -> tuple[str, str] | None:
        """(colour, type) of the carried object, or ``None``."""
        obj = self.env.carrying
        return None if obj is None else (obj.color, obj.type)

    def step(self, action: int) -> None:
        """Run one low-level action and record its outcome."""
        _, reward, terminated, truncated, _ = self.env.step(action)
        self.actions_taken += 1
        self.reward += float(reward)
        self.terminated = self.terminated or bool(terminated)
        self.truncated = self.truncated or bool(truncated)

    def copy(self) -> Episode:
        """An independent copy: executing in it leaves this episode untouched."""
        return copy.deepcopy(self)


def make_episode(env_id: str, seed: int) -> Episode:
    """Create ``env_id`` and reset it with ``seed`` (deterministic)."""
    if env_id not in ENVIRONMENTS:
        raise UnknownEnvironmentError(env_id)
    env = gym.make(env_id, disable_env_checker=True).unwrapped
    with contextlib.redirect_stdout(io.StringIO()):  # BabyAI prints its rejection sampling
        env.reset(seed=int(seed))
    return Episode(env_id=env_id, seed=int(seed), env=env)


def _door_state(obj) -> str:
    if obj.is_locked:
        return "locked"
    return "open" if obj.is_open else "closed"


def world_objects(episode: Episode) -> list[WorldObject]:
    """Every key, ball, box, door and goal on the grid, in row-major order (y, then x)."""
    grid = episode.env.grid
    found: list[WorldObject] = []
    for y in range(grid.height):
        for x in range(grid.width):
            obj = grid.get(x, y)
            if obj is None:
                continue
            if obj.type == GOAL:
                found.append(WorldObject(None, GOAL, (x, y)))
            elif obj.type in OBJECT_TYPES and obj.color in COLOURS:
                state = _door_state(obj) if obj.type == "door" else None
                found.append(WorldObject(obj.color, obj.type, (x, y), state))
    return found


@dataclass(frozen=True)
class ObjectDescription:
    """What a mission asks for: a type and/or a colour (``None`` matches any)."""

    colour: str | None
    kind: str | None

    def matches(self, colour: str | None, kind: str) -> bool:
        return ((self.kind is None or kind == self.kind)
                and (self.colour is None or colour == self.colour))


def mission_object(episode: Episode) -> ObjectDescription | None:
    """The object the mission names (BabyAI go-to, UnlockPickup's box), else ``None``."""
    env = episode.env
    if episode.family == "goto":
        desc = env.instrs.desc
        return ObjectDescription(desc.color, desc.type)
    if episode.family in ("unlockpickup", "blockedunlockpickup"):
        return ObjectDescription(env.obj.color, env.obj.type)
    return None
