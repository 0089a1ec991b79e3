"""Where a sampled completion ends: the end-of-sequence token or a stop string.

Engines generate whole batches, so a finished row keeps receiving padding; this
module cuts each row back to the tokens the policy actually chose. The first
end-of-sequence token is kept (the policy learns to stop), everything after it
dropped. A stop string ends the completion at the first token whose prefix text
contains it; that token is kept, and the text ends with the stop string.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefalign.rollout.types import Completion


def _decode(tokenizer, ids: Sequence[int], skip_special: bool) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=skip_special)


def first_stop(text: str, stop: Sequence[str]) -> tuple[int, str] | None:
    """``(position, stop string)`` of the earliest stop string in ``text``, or ``None``."""
    found = [(text.find(s), s) for s in stop if s and s in text]
    return min(found) if found else None


def finish_completion(token_ids: Sequence[int], tokenizer, eos_ids: Sequence[int],
                      stop: Sequence[str] = ()) -> Completion:
    """Cut ``token_ids`` (a generated row, possibly padded) at its end (see the module
    docstring) and decode it."""
    ids = list(token_ids)
    finish = "length"
    eos = set(eos_ids)
    for index, token in enumerate(ids):
        if token in eos:
            ids, finish = ids[:index + 1], "eos"
            break
    if stop:
        whole = _decode(tokenizer, ids, skip_special=True)
        if first_stop(whole, stop) is not None:
            for end in range(1, len(ids) + 1):
                prefix = _decode(tokenizer, ids[:end], skip_special=True)
                hit = first_stop(prefix, stop)
                if hit is not None:
                    position, string = hit
                    return Completion(ids[:end], prefix[:position + len(string)], "stop")
    return Completion(ids, _decode(tokenizer, ids, skip_special=True), finish)
