"""Two scores per task: the answer, and whether the right tools were called in order.

Answer scorers (each in [0, 1]):

- ``exact``: 1 when the normalised answer equals the normalised reference
  (lower case, punctuation and articles removed, whitespace collapsed — SQuAD's
  normalisation, Rajpurkar et al. 2016);
- ``numeric``: 1 when the first number in the answer is within 1e-6 relative (or
  1e-9 absolute) of the reference;
- ``f1``: token F1 between normalised answer and reference (SQuAD);
- ``refusal``: 1 when the answer declines for lack of information (a refusal
  phrase, and no sentence asserting a made-up value is required: the task's
  reference is null) — the failure-recovery tasks ask about entities the tools
  know nothing of;
- ``tests``: the share of the task's assertions that pass when the answer (code)
  runs in the sandbox, each assertion in its own run.

Sequence score: the expected tool calls (the oracle's, in order) against the calls
made: the length of their longest common subsequence over the expected length, so
1 when every expected call happened in order (extra calls cost nothing), 0 when
none did. A made call matches an expected one when the tool is the same and the
argument does the same thing: a search whose content words overlap the expected
query's with F1 ≥ 0.5, the same document id or file name, a calculation with the
same value; code for ``run_python`` whose identifiers overlap the expected code's
with F1 ≥ 0.5 (it runs the code under repair, whatever its edits). A task
expecting no tool call scores 1 when none was made, else 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from prefalign.agents.sandbox import SandboxLimits, run_code
from prefalign.agents.tools import ToolContext, calculator, content_words

ARTICLES = re.compile(r"\b(a|an|the)\b")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
REFUSALS = ("i don't know", "i do not know", "cannot find", "can't find", "could not find",
            "couldn't find", "no information", "not find any", "no results", "does not exist",
            "doesn't exist", "unable to find", "no record", "not able to find",
            "cannot answer", "can't answer", "cannot determine", "no data")


def normalise(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = str(text).lower()
    text = "".join(c for c in text if c not in set(string.punctuation))
    return " ".join(ARTICLES.sub(" ", text).split())


def exact(answer: str, reference) -> float:
    return float(normalise(answer) == normalise(reference))


def first_number(text: str) -> float | None:
    match = NUMBER.search(str(text))
    return float(match.group().replace(",", "")) if match else None


def numeric(answer: str, reference) -> float:
    value, target = first_number(answer), float(reference)
    if value is None:
        return 0.0
    return float(abs(value - target) <= max(1e-9, 1e-6 * abs(target)))


def token_f1(answer: str, reference) -> float:
    predicted, gold = normalise(answer).split(), normalise(reference).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if not predicted or not gold or common == 0:
        return float(predicted == gold)
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def refusal(answer: str, reference=None) -> float:
    text = " ".join(str(answer).lower().replace("’", "'").split())
    return float(any(phrase in text for phrase in REFUSALS))


def tests_passed(code: str, tests: list[str], files: dict[str, str] | None = None,
                 limits: SandboxLimits | None = None) -> float:
    """Share of ``tests`` (assertion statements) that pass after ``code``, each run alone."""
    if not tests:
        raise ValueError("a code task needs at least one test")
    limits = limits or SandboxLimits(wall_seconds=5, cpu_seconds=3)
    passed = sum(run_code(f"{code}\n\n{test}\n", files=files, limits=limits).ok
                 for test in tests)
    return passed / len(tests)


ANSWER_SCORERS = {"exact": exact, "numeric": numeric, "f1": token_f1, "refusal": refusal}


def _set_f1(made: set[str], expected: set[str]) -> float:
    common = len(made & expected)
    if not common:
        return 0.0
    precision, recall = common / len(made), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def call_matches(made: tuple[str, str], expected: tuple[str, str]) -> bool:
    """Whether a made call (tool, argument) does what the expected one does."""
    (tool, argument), (want_tool, want) = made, expected
    if tool != want_tool:
        return False
    if tool == "search":
        return _set_f1(set(content_words(argument)), set(content_words(want))) >= 0.5
    if tool == "calculator":
        value = calculator(ToolContext(), argument)
        return not value.startswith("error") and value == calculator(ToolContext(), want)
    if tool in ("read_document", "read_file"):
        return argument.strip().strip("[]'\"./") == want.strip().strip("[]'\"./")
    if tool == "run_python":
        return _set_f1(set(IDENTIFIER.findall(argument)), set(IDENTIFIER.findall(want))) >= 0.5
    return True


def sequence_score(expected: list[tuple[str, str]], made: list[tuple[str, str]]) -> float:
    """LCS(expected, made) / len(expected) under :func:`call_matches`; with nothing
    expected, 1 iff nothing was called."""
    if not expected:
        return float(not made)
    previous = [0] * (len(made) + 1)
    for want in expected:
        row = [0]
        for index, call in enumerate(made):
            row.append(previous[index] + 1 if call_matches(call, want)
                       else max(row[-1], previous[index + 1]))
        previous = row
    return previous[-1] / len(expected)
