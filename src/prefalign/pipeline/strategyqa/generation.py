"""Greedy generation for the StrategyQA stages that survives being killed.

``generate_to_file`` generates a reply for every ``(id, prompt)`` not yet in its
JSON-lines file and appends each batch's replies as soon as they exist, so a
killed stage continues where it stopped. Prompts are batched by length (the
longest first), which keeps padding, and so wasted computation, small.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefalign.engine.rundir import atomic_write_text
from prefalign.eval.generate import generate
from prefalign.log import say


def read_replies(path: Path) -> dict[str, str]:
    """``{id: reply}`` of a replies file (a line cut short by a kill is skipped)."""
    done: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["id"]] = row["text"]
    return done


def generate_to_file(lm, tokenizer, items: list[tuple[str, str]], path: Path, *,
                     max_new_tokens: int, batch_size: int, use_chat_template: bool,
                     label: str) -> dict[str, str]:
    """``{id: reply}`` for every item, generating only those missing from ``path``."""
    done = read_replies(path)
    todo = sorted((item for item in items if item[0] not in done),
                  key=lambda item: -len(tokenizer(item[1])["input_ids"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if done:
        # rewrite without a possibly torn last line before appending
        atomic_write_text(path, "".join(json.dumps({"id": k, "text": v}) + "\n"
                                        for k, v in done.items()))
    with path.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            texts = generate(lm, tokenizer, [prompt for _, prompt in batch],
                             max_new_tokens=max_new_tokens, batch_size=batch_size,
                             use_chat_template=use_chat_template)
            for (key, _), text in zip(batch, texts):
                done[key] = text
                handle.write(json.dumps({"id": key, "text": text}) + "\n")
            handle.flush()
            finished = start + len(batch)
            elapsed = time.perf_counter() - started
            say(label, f"{finished}/{len(todo)} replies ({len(items) - len(todo)} remembered) "
                       f"{elapsed:.0f}s, eta {elapsed / finished * (len(todo) - finished):.0f}s")
    return {key: done[key] for key, _ in items}
