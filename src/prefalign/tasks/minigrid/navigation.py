"""Shortest low-level action sequences on a MiniGrid grid (breadth-first search).

The search runs over agent states ``(x, y, direction)`` with the three motion
actions: turn left (``d -> (d - 1) mod 4``), turn right (``d -> (d + 1) mod 4``)
and forward (``(x, y) -> (x, y) + DIRECTIONS[d]`` if that cell is passable).
A cell is passable when it is empty or can be stood on (an open door, the goal,
floor); walls, keys, balls, boxes, closed or locked doors and lava are not.
Every action costs 1, so BFS returns a minimum-length action sequence; the
fixed expansion order (left, right, forward) makes ties deterministic.
At most ``width * height * 4`` states are visited.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection

from minigrid.minigrid_env import MiniGridEnv

DIRECTIONS: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (-1, 0), (0, -1))
TURN_LEFT, TURN_RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5

State = tuple[int, int, int]


def passable(env: MiniGridEnv, x: int, y: int) -> bool:
    """Whether the agent may step onto cell (x, y)."""
    if not (0 <= x < env.grid.width and 0 <= y < env.grid.height):
        return False
    cell = env.grid.get(x, y)
    return cell is None or (cell.can_overlap() and cell.type != "lava")


def front_of(state: State) -> tuple[int, int]:
    x, y, d = state
    dx, dy = DIRECTIONS[d]
    return x + dx, y + dy


def shortest_actions(env: MiniGridEnv, start: State,
                     is_goal: Callable[[State], bool]) -> list[int] | None:
    """Minimum-length list of motion actions from ``start`` to a state where
    ``is_goal`` holds, ``[]`` if ``start`` already does, ``None`` if none is reachable."""
    if is_goal(start):
        return []
    parents: dict[State, tuple[State, int] | None] = {start: None}
    queue: deque[State] = deque([start])
    while queue:
        state = queue.popleft()
        x, y, d = state
        successors = [((x, y, (d - 1) % 4), TURN_LEFT), ((x, y, (d + 1) % 4), TURN_RIGHT)]
        fx, fy = front_of(state)
        if passable(env, fx, fy):
            successors.append(((fx, fy, d), FORWARD))
        for nxt, action in successors:
            if nxt in parents:
                continue
            parents[nxt] = (state, action)
            if is_goal(nxt):
                return _unwind(parents, nxt)
            queue.append(nxt)
    return None


def _unwind(parents: dict[State, tuple[State, int] | None], state: State) -> list[int]:
    actions: list[int] = []
    link = parents[state]
    while link is not None:
        state, action = link
        actions.append(action)
        link = parents[state]
    return actions[::-1]


def actions_to_face(env: MiniGridEnv, start: State,
                    targets: Collection[tuple[int, int]]) -> list[int] | None:
    """Shortest motion to stand next to and face any cell of ``targets``."""
    wanted = set(targets)
    return shortest_actions(env, start, lambda s: front_of(s) in wanted)


def actions_to_stand_on(env: MiniGridEnv, start: State,
                        targets: Collection[tuple[int, int]]) -> list[int] | None:
    """Shortest motion to stand on any cell of ``targets`` (in any direction)."""
    wanted = set(targets)
    return shortest_actions(env, start, lambda s: (s[0], s[1]) in wanted)
