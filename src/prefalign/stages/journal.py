"""An append-only JSONL journal of processed items, so a killed run loses nothing.

The first line is ``{"settings": {...}}``: what produced the entries (model,
judge, sampling, seed, the input's fingerprint). Each later line is one entry
with an ``"prompt_index"``, written and flushed as soon as the item is done. A
re-run opens the journal, refuses it if the settings differ (other settings
would mix two experiments in one file) and skips the indices it holds. A last
line cut short by a kill is dropped before appending.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefalign.errors import PrefalignError


class Journal:
    """Entries by index, read from ``path`` and appended to it."""

    def __init__(self, path: Path, settings: dict):
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings, sort_keys=True))
        self.entries: dict[int, dict] = {}
        if self.path.exists() and self.path.stat().st_size:
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"settings": settings}, sort_keys=True) + "\n")

    def _read(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        if not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]
            self.path.write_text(text, encoding="utf-8")
        lines = text.splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("settings") != self.settings:
            found = header.get("settings") or {}
            changed = sorted(k for k in set(found) | set(self.settings)
                             if found.get(k) != self.settings.get(k))
            raise PrefalignError(
                f"{self.path} was written with other settings ({', '.join(changed)} differ); "
                f"choose another --out, or delete it to start over")
        for line in lines[1:]:
            entry = json.loads(line)
            self.entries[int(entry["prompt_index"])] = entry

    def append(self, entries: list[dict]) -> None:
        """Record ``entries`` (skipping indices already present), flushed at once."""
        fresh = [e for e in entries if int(e["prompt_index"]) not in self.entries]
        with self.path.open("a", encoding="utf-8") as handle:
            for entry in fresh:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
        for entry in fresh:
            self.entries[int(entry["prompt_index"])] = entry

    def ordered(self) -> list[dict]:
        """Entries by increasing index."""
        return [self.entries[i] for i in sorted(self.entries)]
