"""Run one symbolic subgoal in the real environment and judge it.

Success contract. ``execute(episode, text)`` succeeds exactly when all hold:

1. ``text`` parses in the subgoal grammar (else ``UNPARSEABLE``);
2. the episode has not ended, and does not end before the subgoal is done
   (else ``EPISODE_ENDED``);
3. the named object is on the grid (else ``NO_SUCH_OBJECT``; a carried object
   is not on the grid);
4. the verb's precondition holds before any action is taken (else
   ``PRECONDITION_UNMET``): ``pickup`` needs empty hands; ``open`` on a locked
   door needs the key of the door's colour carried; ``drop`` needs something
   carried and a reachable free cell outside doorways;
5. a path exists (else ``UNREACHABLE``);
6. the postcondition holds after the low-level actions ran:
   ``goto(C T)`` — the agent stands next to and faces a matching object;
   ``goto(goal)`` — the agent stands on the goal;
   ``pickup(C T)`` — the agent carries a matching object;
   ``open(C door)`` — the matching door it faces is open;
   ``drop()`` — hands empty, the object lies on the faced cell;
7. the subgoal makes progress: the expert's remaining plan (``expert_plan``)
   is strictly shorter afterwards than before (else ``NO_PROGRESS``; this also
   covers subgoals already satisfied — opening an open door, going where the
   agent already is — which fail before any action). Because ``pickup`` and
   ``open`` include the walk to their object, a bare ``goto`` of that object
   is not progress.

Low-level plans: ``goto`` is the shortest (x, y, direction) path from
``navigation``, to the nearest matching object; ``pickup`` = goto + pickup;
``open`` = goto (to a door it can open) + toggle; ``drop`` = the shortest
motion (usually none, or a turn) to face an empty cell that is not in a
doorway (beside a door, where a dropped object would block it), then drop.
Actions run until the plan ends or the environment ends the episode. A
successful subgoal is appended to ``episode.completed``; ``steps`` counts the
low-level actions actually taken, also on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from prefalign.tasks.minigrid.episodes import Episode, world_objects
from prefalign.tasks.minigrid.expert import expert_plan
from prefalign.tasks.minigrid.grammar import (
    GOAL,
    Subgoal,
    SubgoalParseError,
    format_subgoal,
    parse_subgoal,
)
from prefalign.tasks.minigrid.navigation import (
    DIRECTIONS,
    DROP,
    PICKUP,
    TOGGLE,
    TURN_LEFT,
    TURN_RIGHT,
    actions_to_face,
    actions_to_stand_on,
)


class FailureType(str, Enum):
    """Why a subgoal failed the execution contract."""

    UNPARSEABLE = "UNPARSEABLE"
    NO_SUCH_OBJECT = "NO_SUCH_OBJECT"
    UNREACHABLE = "UNREACHABLE"
    PRECONDITION_UNMET = "PRECONDITION_UNMET"
    NO_PROGRESS = "NO_PROGRESS"
    EPISODE_ENDED = "EPISODE_ENDED"


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one subgoal: ``failure`` is ``None`` exactly when ``success``."""

    success: bool
    failure: FailureType | None
    steps: int
    detail: str


@dataclass(frozen=True)
class _Plan:
    actions: list[int]
    target: tuple[int, int] | None
    description: str


class _Refusal(Exception):
    def __init__(self, failure: FailureType, detail: str):
        super().__init__(detail)
        self.failure, self.detail = failure, detail


def _state(episode: Episode) -> tuple[int, int, int]:
    return (*episode.agent_position, episode.agent_direction)


def _carried_name(episode: Episode) -> str:
    carried = episode.carried()
    return "nothing" if carried is None else " ".join(carried)


def _matching_positions(episode: Episode, subgoal: Subgoal) -> list[tuple[int, int]]:
    positions = [obj.position for obj in world_objects(episode)
                 if subgoal.matches(obj.colour, obj.kind)]
    if not positions:
        carried = episode.carried()
        where = " (it is being carried)" if carried and subgoal.matches(*carried) else ""
        name = format_subgoal(subgoal)[len(subgoal.verb) + 1:-1]
        raise _Refusal(FailureType.NO_SUCH_OBJECT, f"no {name} on the grid{where}")
    return positions


def _path_to_face(episode: Episode, positions: list[tuple[int, int]], name: str) -> list[int]:
    path = actions_to_face(episode.env, _state(episode), positions)
    if path is None:
        raise _Refusal(FailureType.UNREACHABLE, f"no path to the {name}")
    return path


def _plan_goto(episode: Episode, subgoal: Subgoal) -> _Plan:
    positions = _matching_positions(episode, subgoal)
    if subgoal.target_type == GOAL:
        if episode.agent_position in positions:
            raise _Refusal(FailureType.NO_PROGRESS, "the agent already stands on the goal")
        path = actions_to_stand_on(episode.env, _state(episode), positions)
        if path is None:
            raise _Refusal(FailureType.UNREACHABLE, "no path to the goal")
        return _Plan(path, None, "reached the goal")
    name = f"{subgoal.colour} {subgoal.target_type}"
    if episode.front_position in positions:
        raise _Refusal(FailureType.NO_PROGRESS, f"the agent already faces the {name}")
    path = _path_to_face(episode, positions, name)
    return _Plan(path, None, f"faces the {name}")


def _plan_pickup(episode: Episode, subgoal: Subgoal) -> _Plan:
    name = f"{subgoal.colour} {subgoal.target_type}"
    carried = episode.carried()
    if carried is not None:
        if subgoal.matches(*carried):
            raise _Refusal(FailureType.NO_PROGRESS, f"the agent already carries the {name}")
        raise _Refusal(FailureType.PRECONDITION_UNMET,
                       f"the agent already carries a {' '.join(carried)}; drop it first")
    positions = _matching_positions(episode, subgoal)
    path = _path_to_face(episode, positions, name)
    return _Plan(path + [PICKUP], None, f"picked up the {name}")


def _plan_open(episode: Episode, subgoal: Subgoal) -> _Plan:
    name = f"{subgoal.colour} door"
    doors = [obj for obj in world_objects(episode) if subgoal.matches(obj.colour, obj.kind)]
    if not doors:
        raise _Refusal(FailureType.NO_SUCH_OBJECT, f"no {name} on the grid")
    shut = [door for door in doors if door.state != "open"]
    if not shut:
        raise _Refusal(FailureType.NO_PROGRESS, f"the {name} is already open")
    has_key = episode.carried() == (subgoal.colour, "key")
    openable = [door.position for door in shut if door.state == "closed" or has_key]
    if not openable:
        raise _Refusal(FailureType.PRECONDITION_UNMET,
                       f"the {name} is locked and the agent carries {_carried_name(episode)}, "
                       f"not the {subgoal.colour} key")
    path = _path_to_face(episode, openable, name)
    return _Plan(path + [TOGGLE], None, f"opened the {name}")


def _in_doorway(grid, x: int, y: int) -> bool:
    """Whether cell (x, y) is orthogonally next to a door."""
    for dx, dy in DIRECTIONS:
        if 0 <= x + dx < grid.width and 0 <= y + dy < grid.height:
            cell = grid.get(x + dx, y + dy)
            if cell is not None and cell.type == "door":
                return True
    return False


def _plan_drop(episode: Episode) -> _Plan:
    if episode.carried() is None:
        raise _Refusal(FailureType.PRECONDITION_UNMET, "the agent carries nothing to drop")
    grid = episode.env.grid
    free = [(x, y) for y in range(grid.height) for x in range(grid.width)
            if grid.get(x, y) is None and not _in_doorway(grid, x, y)
            and (x, y) != episode.agent_position]
    path = actions_to_face(episode.env, _state(episode), free)
    if path is None:
        raise _Refusal(FailureType.PRECONDITION_UNMET,
                       "no free cell the agent can reach to drop onto (doorways excluded)")
    x, y, direction = _state(episode)
    for action in path:
        if action == TURN_LEFT:
            direction = (direction - 1) % 4
        elif action == TURN_RIGHT:
            direction = (direction + 1) % 4
        else:
            x, y = x + DIRECTIONS[direction][0], y + DIRECTIONS[direction][1]
    target = (x + DIRECTIONS[direction][0], y + DIRECTIONS[direction][1])
    return _Plan(path + [DROP], target, f"dropped the {_carried_name(episode)}")


def _postcondition(episode: Episode, subgoal: Subgoal, plan: _Plan) -> bool:
    if subgoal.verb == "drop":
        return episode.carried() is None and episode.env.grid.get(*plan.target) is not None
    if subgoal.verb == "pickup":
        carried = episode.carried()
        return carried is not None and subgoal.matches(*carried)
    if subgoal.target_type == GOAL:
        cell = episode.env.grid.get(*episode.agent_position)
        return cell is not None and cell.type == GOAL
    faced = episode.env.grid.get(*episode.front_position)
    if faced is None or not subgoal.matches(faced.color, faced.type):
        return False
    return subgoal.verb == "goto" or bool(faced.is_open)


_PLANNERS = {"goto": _plan_goto, "pickup": _plan_pickup, "open": _plan_open,
             "drop": lambda episode, _subgoal: _plan_drop(episode)}


def execute(episode: Episode, subgoal_text: str) -> ExecutionResult:
    """Parse, plan and run one subgoal in ``episode`` (mutating it); see the module
    docstring for the success contract."""
    try:
        subgoal = parse_subgoal(subgoal_text)
    except SubgoalParseError as error:
        return ExecutionResult(False, FailureType.UNPARSEABLE, 0, error.reason)
    if episode.over:
        return ExecutionResult(False, FailureType.EPISODE_ENDED, 0, "the episode has already ended")
    remaining_before = len(expert_plan(episode))
    try:
        plan = _PLANNERS[subgoal.verb](episode, subgoal)
    except _Refusal as refusal:
        return ExecutionResult(False, refusal.failure, 0, refusal.detail)
    steps = 0
    for action in plan.actions:
        episode.step(action)
        steps += 1
        if episode.over:
            break
    if not _postcondition(episode, subgoal, plan):
        if episode.over:
            return ExecutionResult(False, FailureType.EPISODE_ENDED, steps,
                                   f"the episode ended after {steps} of "
                                   f"{len(plan.actions)} actions")
        return ExecutionResult(False, FailureType.PRECONDITION_UNMET, steps,
                               "the environment did not carry out the final action")
    remaining_after = len(expert_plan(episode))
    if remaining_after >= remaining_before:
        return ExecutionResult(
            False, FailureType.NO_PROGRESS, steps,
            f"{plan.description} but the mission did not advance "
            f"({remaining_before} expert subgoals remained before, {remaining_after} after)")
    episode.completed.append(format_subgoal(subgoal))
    plural = "" if steps == 1 else "s"
    return ExecutionResult(True, None, steps, f"{plan.description} in {steps} action{plural}")
