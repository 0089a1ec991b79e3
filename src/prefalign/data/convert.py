"""Converters from common raw data shapes to prefalign records.

``hh``: Anthropic hh-rlhf rows ``{"chosen", "rejected"}``, each a whole
transcript ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, become preference records
``{"prompt": [messages...], "chosen": str, "rejected": str}``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefalign.data.load import read_rows, write_jsonl
from prefalign.data.schema import UnusableRecord
from prefalign.errors import ConfigError, DataError

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
IDENTICAL_REPLIES = "chosen and rejected replies are identical"


def parse_hh_transcript(text: Any, name: str, file: str | None = None,
                        line: int | None = None) -> list[dict]:
    """Split an hh-rlhf transcript into chat messages with stripped contents.

    Consecutive turns by the same speaker (a known glitch of the data set) are
    merged, joined by a blank line, so roles alternate as chat templates expect.
    """
    if not isinstance(text, str):
        raise DataError(f"expected a transcript text, got {type(text).__name__}",
                        file=file, line=line, field=name)
    if text.startswith("Human:"):
        text = "\n\n" + text
    pieces = _HH_TURN.split(text)
    if len(pieces) == 1:
        raise DataError("no '\\n\\nHuman:' / '\\n\\nAssistant:' turns found",
                        file=file, line=line, field=name)
    if pieces[0].strip():
        raise DataError("text before the first 'Human:' turn", file=file, line=line, field=name)
    turns: list[dict] = []
    for speaker, content in zip(pieces[1::2], pieces[2::2]):
        role, content = _HH_ROLES[speaker], content.strip()
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = "\n\n".join(p for p in (turns[-1]["content"], content) if p)
        else:
            turns.append({"role": role, "content": content})
    if turns[0]["role"] != "user":
        raise DataError("transcript must start with a 'Human:' turn",
                        file=file, line=line, field=name)
    if turns[-1]["role"] != "assistant":
        raise DataError("transcript must end with an 'Assistant:' turn",
                        file=file, line=line, field=name)
    return turns


def _shared_prompt_length(chosen: list[dict], rejected: list[dict]) -> int:
    """Turns before the final reply if both agree there, else the longest common
    turn prefix that ends with a user turn."""
    if chosen[:-1] == rejected[:-1]:
        return len(chosen) - 1
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while shared > 0 and chosen[shared - 1]["role"] != "user":
        shared -= 1
    return shared


def hh_to_preference(row: Any, file: str | None = None, line: int | None = None) -> dict:
    """Convert one raw hh-rlhf row into a preference record.

    Raises ``DataError`` for a malformed transcript and ``UnusableRecord`` for a
    well-formed one that cannot make a pair (empty reply or prompt turn,
    conversations that differ before their final reply).
    """
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, got {type(row).__name__}", file=file, line=line)
    for name in ("chosen", "rejected"):
        if row.get(name) is None:
            raise DataError("missing required field", file=file, line=line, field=name)
    chosen = parse_hh_transcript(row["chosen"], "chosen", file, line)
    rejected = parse_hh_transcript(row["rejected"], "rejected", file, line)
    shared = _shared_prompt_length(chosen, rejected)
    if shared == 0:
        raise UnusableRecord("chosen and rejected share no prompt", file=file, line=line)
    if len(chosen) != shared + 1 or len(rejected) != shared + 1:
        raise UnusableRecord("conversations diverge before the final reply", file=file, line=line)
    if any(not turn["content"] for turn in chosen[:shared]):
        raise UnusableRecord("empty prompt turn", file=file, line=line, field="prompt")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns[shared]["content"]:
            raise UnusableRecord("empty reply", file=file, line=line, field=name)
    return {"prompt": chosen[:shared], "chosen": chosen[shared]["content"],
            "rejected": rejected[shared]["content"]}


CONVERTERS: dict[str, Callable[..., dict]] = {"hh": hh_to_preference}


@dataclass
class ConversionCounts:
    """How many rows a conversion wrote, and how many it skipped for each reason."""

    converted: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.converted + sum(self.skipped.values())

    def summary(self) -> str:
        line = f"converted {self.converted} of {self.total} rows"
        if self.skipped:
            reasons = ", ".join(f"{reason}: {count}" for reason, count in self.skipped.items())
            line += f"; skipped {sum(self.skipped.values())} ({reasons})"
        return line


def convert_file(src: str | Path, dst: str | Path, fmt: str = "hh") -> ConversionCounts:
    """Convert every row of ``src`` with converter ``fmt`` and write JSONL to ``dst``.

    ``dst`` is written atomically, only once every row has converted or been
    skipped; a malformed row stops the conversion with its line number.
    """
    if fmt not in CONVERTERS:
        raise ConfigError(f"unknown conversion format {fmt!r}; expected one of "
                          f"{', '.join(CONVERTERS)}")
    convert = CONVERTERS[fmt]
    file = str(src)
    records, skipped = [], Counter()
    for line, row in read_rows(src):
        try:
            record = convert(row, file=file, line=line)
        except UnusableRecord as error:
            skipped[error.reason] += 1
            continue
        if record["chosen"] == record["rejected"]:
            skipped[IDENTICAL_REPLIES] += 1
            continue
        records.append(record)
    write_jsonl(records, dst)
    return ConversionCounts(converted=len(records), skipped=dict(skipped))
