"""Is a subgoal grounded in the state text it answers? A check that reads only the prompt.

A subgoal is grounded when it parses and refers to the observation: ``drop()``
only while carrying something; ``goto``/``pickup``/``open`` only of an object
listed under ``Objects:`` (``goto(goal)`` only when a goal is listed); ``open``
only of a door that is not already open (one of that colour, when several);
``pickup`` only with empty hands. Nothing is executed: the check reads the same
text the policy read, so a reranker that uses it (best-of-n's ``grounded``
guard) stays a text-only policy, while a reward model that never saw such
candidates cannot promote one.
"""

from __future__ import annotations

import re

from prefalign.tasks.minigrid.grammar import SubgoalParseError, parse_subgoal

_OBJECT = re.compile(r"^(?:(\w+) )?(\w+) \(\d+,\d+\)(?: (\w+))?$")


def listed_objects(state: str) -> list[tuple[str | None, str, str | None]]:
    """``(colour, type, state)`` of every object on the state's ``Objects:`` line."""
    for line in state.splitlines():
        if line.startswith("Objects: "):
            body = line[len("Objects: "):].rstrip(".")
            if body == "none":
                return []
            found = [_OBJECT.match(item.strip()) for item in body.split(";")]
            return [(m.group(1), m.group(2), m.group(3)) for m in found if m]
    return []


def carrying_something(state: str) -> bool:
    return re.search(r"carrying nothing\.", state) is None and "carrying " in state


def grounded(subgoal_text: str, state: str) -> bool:
    """True when ``subgoal_text`` parses and refers to what ``state`` describes."""
    try:
        subgoal = parse_subgoal(subgoal_text)
    except SubgoalParseError:
        return False
    if subgoal.verb == "drop":
        return carrying_something(state)
    if subgoal.verb == "pickup" and carrying_something(state):
        return False
    return any(subgoal.matches(colour or "", kind)
               and not (subgoal.verb == "open" and condition == "open")
               for colour, kind, condition in listed_objects(state))
