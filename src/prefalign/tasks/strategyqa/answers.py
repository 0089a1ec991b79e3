"""Reading a yes/no answer out of free text, and the StrategyQA verifier.

``read_yes_no`` decides what a completion answers, in this order:

1. an explicit final-answer marker — the last ``answer is yes``, ``answer: no``
   (any case, optional quotes or punctuation) — wins over everything else, so a
   rationale that says "no" on the way to "So the answer is yes." reads yes;
2. else the leading word: "Yes, but…" is yes, "No. Whales are…" is no;
3. else the one of the two words that occurs, when only one does;
4. else ``None``: both words without a marker or a leading one, or neither.

``true``/``false`` count as yes/no. A completion that reads ``None`` never
passes the verifier.
"""

from __future__ import annotations

import re

_WORDS = {"yes": True, "true": True, "no": False, "false": False}
_ANSWER = r"(yes|no|true|false)\b"
_MARKER = re.compile(r"answer\s*(?:is|:|=)\s*[\"'*(\[]*\s*" + _ANSWER, re.IGNORECASE)
_LEADING = re.compile(r"^[\s\"'*(\[]*" + _ANSWER, re.IGNORECASE)
_ANY = re.compile(r"\b" + _ANSWER, re.IGNORECASE)


def read_yes_no(text: str) -> bool | None:
    """True for yes, False for no, None when the text does not commit to one."""
    marked = _MARKER.findall(text)
    if marked:
        return _WORDS[marked[-1].lower()]
    leading = _LEADING.match(text)
    if leading:
        return _WORDS[leading.group(1).lower()]
    found = {_WORDS[word.lower()] for word in _ANY.findall(text)}
    return found.pop() if len(found) == 1 else None


def answer_word(answer: bool) -> str:
    """``"yes"`` or ``"no"``."""
    return "yes" if answer else "no"


class StrategyQAVerifier:
    """1 when the completion's yes/no (``read_yes_no``) equals the record's ``answer``."""

    name = "strategyqa"
    required_fields = ("answer",)

    def score(self, completion: str, record: dict) -> float:
        answer = record["answer"]
        if isinstance(answer, str):
            answer = read_yes_no(answer)
        return 1.0 if read_yes_no(completion) == answer and answer is not None else 0.0


def strategyqa_verifier() -> StrategyQAVerifier:
    """``StrategyQAVerifier()``: the completion's final yes/no against the label."""
    return StrategyQAVerifier()
