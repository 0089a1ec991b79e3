"""The textual state given to a language model, and the prompt built around it.

``describe_state`` lists, in a fixed order: the mission; the grid size; the
agent's position, heading and what it carries; every key, ball, box, door and
goal with its position (and, for doors, locked/closed/open), in row-major
order; and the subgoals completed so far. Positions are ``(x, y)`` with x to
the east and y to the south, as in MiniGrid. An 8x8 DoorKey state takes about
60 tokens. ``build_prompt`` puts a fixed instruction stating the grammar in
front and ends with ``Next subgoal:``; training data and evaluation both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefalign.tasks.minigrid.episodes import HEADINGS, Episode, world_objects
from prefalign.tasks.minigrid.grammar import COLOURS, OBJECT_TYPES

INSTRUCTION = (
    "You control an agent in a grid world. Reply with the next subgoal only, one of: "
    "goto(COLOUR TYPE), goto(goal), pickup(COLOUR TYPE), open(COLOUR door), drop(). "
    f"Colours: {', '.join(COLOURS)}. Types: {', '.join(OBJECT_TYPES)}."
)
PROMPT_SUFFIX = "Next subgoal:"


def _describe_object(obj) -> str:
    text = f"{obj.name} ({obj.position[0]},{obj.position[1]})"
    return f"{text} {obj.state}" if obj.state else text


def describe_state(episode: Episode, completed_subgoals: Sequence[str] | None = None) -> str:
    """The compact, deterministic description of ``episode``'s current state.

    ``completed_subgoals`` defaults to ``episode.completed``.
    """
    completed = episode.completed if completed_subgoals is None else completed_subgoals
    x, y = episode.agent_position
    carried = episode.carried()
    objects = world_objects(episode)
    carrying = "nothing" if carried is None else " ".join(carried)
    lines = [
        f"Mission: {episode.env.mission}",
        f"Grid {episode.env.grid.width}x{episode.env.grid.height}. Agent at ({x},{y}) "
        + f"facing {HEADINGS[episode.agent_direction]}, carrying {carrying}.",
        "Objects: " + ("; ".join(_describe_object(obj) for obj in objects) or "none") + ".",
        "Completed: " + (", ".join(completed) or "none") + ".",
    ]
    return "\n".join(lines)


def build_prompt(context: str) -> str:
    """Instruction + state description + ``Next subgoal:`` (the model's prompt)."""
    return f"{INSTRUCTION}\n{context}\n{PROMPT_SUFFIX}"
