"""Rubrics of pairwise judges: a text with ``{prompt}``, ``{response_a}``, ``{response_b}``.

The default rubric (``rubrics/default.md``) asks for the more helpful, honest and
harmless response and for a one-letter answer, "A" or "B". A user's rubric file
replaces it; it must contain the three placeholders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from prefalign.errors import ConfigError

PLACEHOLDERS = ("{prompt}", "{response_a}", "{response_b}")
MAX_CHARS = 3000


def read_rubric(path: str | Path | None = None) -> str:
    """The rubric text at ``path`` (default: the packaged one); checks the placeholders."""
    if path is None:
        return resources.files("prefalign.judges").joinpath("rubrics/default.md").read_text()
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"rubric file not found: {file}")
    text = file.read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ConfigError(f"{file}: a rubric must contain {', '.join(PLACEHOLDERS)}; "
                          f"missing {', '.join(missing)}")
    return text


def as_text(value) -> str:
    """A prompt or response as text: a chat message list becomes ``role: content`` lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in value)
    return str(value)


def render(rubric: str, prompt, first, second, max_chars: int = MAX_CHARS) -> str:
    """The judge's question; the prompt keeps its last ``max_chars`` characters and each
    response its first ``max_chars``, so a long conversation cannot crowd out the answers."""
    values = {"{prompt}": as_text(prompt)[-max_chars:],
              "{response_a}": as_text(first)[:max_chars],
              "{response_b}": as_text(second)[:max_chars]}
    out, rest = [], rubric
    while rest:
        hits = [(rest.find(p), p) for p in PLACEHOLDERS if p in rest]
        if not hits:
            out.append(rest)
            break
        index, placeholder = min(hits)
        out += [rest[:index], values[placeholder]]
        rest = rest[index + len(placeholder):]
    return "".join(out)


def parse_letter(text: str) -> float:
    """A text answer as P(first better): "A" → 1, "B" → 0, "tie" or anything else → ½."""
    answer = text.strip().lstrip("*([\"'").upper()
    if answer.startswith("A") and not answer.startswith("AS "):
        return 1.0
    if answer.startswith("B"):
        return 0.0
    return 0.5
