"""The canonical subgoal grammar: ``verb(colour type)``, ``goto(goal)`` and ``drop()``.

The grammar is deliberately small and strict, so that "the model wrote a valid
subgoal" is a yes/no question with a stated reason for every no::

    subgoal  := goto(OBJECT) | goto(goal) | pickup(OBJECT) | open(DOOR) | drop()
    OBJECT   := COLOUR " " TYPE          (exactly one space)
    DOOR     := COLOUR " door"
    COLOUR   := red | green | blue | purple | yellow | grey
    TYPE     := key | ball | box | door   (pickup takes key, ball or box)

Only whitespace around the whole subgoal is ignored; anything else (capitals,
extra spaces, trailing text, a second subgoal) is a parse error. ``format_subgoal``
writes the one canonical spelling, so ``parse_subgoal(format_subgoal(s)) == s``
and ``format_subgoal(parse_subgoal(t)) == t.strip()`` for every valid ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.errors import PrefalignError

COLOURS: tuple[str, ...] = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECT_TYPES: tuple[str, ...] = ("key", "ball", "box", "door")
PICKABLE_TYPES: tuple[str, ...] = ("key", "ball", "box")
VERBS: tuple[str, ...] = ("goto", "pickup", "open", "drop")
GOAL = "goal"


class SubgoalParseError(PrefalignError):
    """A string that is not a subgoal of the grammar; ``reason`` says why."""

    def __init__(self, text: str, reason: str):
        self.text, self.reason = text, reason
        super().__init__(f"invalid subgoal {text!r}: {reason}")


@dataclass(frozen=True)
class Subgoal:
    """One parsed subgoal. ``target_type`` is ``"goal"`` (with no colour) for
    ``goto(goal)``; both fields are ``None`` for ``drop()``."""

    verb: str
    colour: str | None = None
    target_type: str | None = None

    def matches(self, colour: str, target_type: str) -> bool:
        """Whether a world object of this colour and type is what the subgoal names."""
        if self.target_type == GOAL:
            return target_type == GOAL
        return self.colour == colour and self.target_type == target_type


def format_subgoal(subgoal: Subgoal) -> str:
    """The canonical spelling of a subgoal (the inverse of ``parse_subgoal``)."""
    if subgoal.verb == "drop":
        return "drop()"
    if subgoal.target_type == GOAL:
        return f"{subgoal.verb}({GOAL})"
    return f"{subgoal.verb}({subgoal.colour} {subgoal.target_type})"


def parse_subgoal(text: str) -> Subgoal:
    """Parse one canonical subgoal, raising ``SubgoalParseError`` with the reason.

    Checks, in order: a verb followed by ``(``; the verb is known; a closing
    ``)``, with no ``(`` before it, that ends the text; the argument count for
    the verb (``drop`` takes none, the others one); the argument is ``goal`` or
    ``colour type`` with a known colour and type; the type suits the verb (``pickup`` cannot take a
    door or the goal, ``open`` takes only a door).
    """
    if not isinstance(text, str):
        raise SubgoalParseError(repr(text), "a subgoal must be a string")
    stripped = text.strip()
    if not stripped:
        raise SubgoalParseError(text, "empty text")
    open_at = stripped.find("(")
    if open_at < 0:
        raise SubgoalParseError(text, "expected 'verb(argument)', found no '('")
    verb = stripped[:open_at]
    if verb not in VERBS:
        raise SubgoalParseError(text, f"unknown verb {verb!r}; expected one of {', '.join(VERBS)}")
    close_at = stripped.find(")", open_at)
    if close_at < 0:
        raise SubgoalParseError(text, "missing ')'")
    argument = stripped[open_at + 1:close_at]
    if "(" in argument:
        raise SubgoalParseError(text, "nested '(' in the argument")
    if close_at != len(stripped) - 1:
        raise SubgoalParseError(text, f"extra text after ')': {stripped[close_at + 1:]!r}")
    if verb == "drop":
        if argument:
            raise SubgoalParseError(text, f"wrong arity: drop takes no argument, got {argument!r}")
        return Subgoal("drop")
    if not argument:
        raise SubgoalParseError(text, f"wrong arity: {verb} takes one argument, got none")
    if "," in argument:
        raise SubgoalParseError(text, f"wrong arity: {verb} takes one argument")
    if argument == GOAL:
        if verb != "goto":
            raise SubgoalParseError(text, f"{verb} cannot take the goal; only goto(goal)")
        return Subgoal("goto", None, GOAL)
    words = argument.split(" ")
    if len(words) != 2:
        raise SubgoalParseError(
            text, f"the argument must be 'colour type' or 'goal', got {argument!r}")
    colour, target_type = words
    if colour not in COLOURS:
        raise SubgoalParseError(
            text, f"unknown colour {colour!r}; expected one of {', '.join(COLOURS)}")
    if target_type == GOAL:
        raise SubgoalParseError(text, "the goal takes no colour: write goto(goal)")
    if target_type not in OBJECT_TYPES:
        raise SubgoalParseError(
            text, f"unknown object type {target_type!r}; expected one of {', '.join(OBJECT_TYPES)}")
    if verb == "pickup" and target_type not in PICKABLE_TYPES:
        raise SubgoalParseError(text, f"pickup takes a key, ball or box, not a {target_type}")
    if verb == "open" and target_type != "door":
        raise SubgoalParseError(text, f"open takes a door, not a {target_type}")
    return Subgoal(verb, colour, target_type)


def parses(text: str) -> bool:
    """True when ``text`` is a subgoal of the grammar (``parse_subgoal`` accepts it)."""
    try:
        parse_subgoal(text)
    except SubgoalParseError:
        return False
    return True

