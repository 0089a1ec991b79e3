"""The texts of the ask-and-draft recipe: prompts, rationales, drafts and their pairs.

* Phase A (answer only): ``answer_prompt(q)`` → ``" yes"`` / ``" no"``.
* Phase B (reasoning): ``reasoning_prompt(q)`` → ``rationale(record)``: the
  clarifying sub-questions a person wrote (``decomposition``), the first
  ``max_facts`` evidence sentences (``facts``), then ``So the answer is yes.``
  A teacher's chain of thought can take the rationale's place.
* Phase C (draft-conditioned): ``draft_prompt(q, draft)`` is the question, then
  ``" Student draft: "`` and the Phase-B model's own draft, then the reasoning
  cue. ``draft_pair`` makes the preference pair: chosen = the reference
  rationale with the correct answer; rejected = the draft itself when its answer
  is wrong, else the draft with its final answer flipped (``flip_answer``), so
  every rejected reply ends in the wrong answer.
* The shuffled-draft ablation pairs each question with another question's draft
  (``derangement``: a random permutation without fixed points).
"""

from __future__ import annotations

import random
import re

from prefalign.tasks.strategyqa.answers import answer_word, read_yes_no

DRAFT_SEPARATOR = " Student draft: "
REASONING_CUE = "Think step by step, then answer yes or no."
_FINAL = re.compile(r"(answer\s*(?:is|:|=)\s*[\"'*(\[]*\s*)(yes|no|true|false)\b",
                    re.IGNORECASE)


def answer_prompt(question: str) -> str:
    """Phase A's prompt: the question and a request for a one-word answer."""
    return f"Question: {question}\nAnswer yes or no:"


def reasoning_prompt(question: str) -> str:
    """Phase B's prompt: the question and the reasoning cue."""
    return f"Question: {question}\n{REASONING_CUE}\n"


def draft_prompt(question: str, draft: str) -> str:
    """Phase C's prompt: question + ``" Student draft: "`` + draft, then the cue."""
    return f"Question: {question}{DRAFT_SEPARATOR}{' '.join(draft.split())}\n{REASONING_CUE}\n"


def final_sentence(answer: bool) -> str:
    return f"So the answer is {answer_word(answer)}."


def rationale(record: dict, max_facts: int = 1) -> str:
    """Sub-questions, the first ``max_facts`` facts and the final answer, as one reply."""
    parts = []
    if record["decomposition"]:
        parts.append("Sub-questions: " + " ".join(record["decomposition"]))
    if record["facts"] and max_facts > 0:
        parts.append("Facts: " + " ".join(record["facts"][:max_facts]))
    parts.append(final_sentence(record["answer"]))
    return " " + "\n".join(parts)


def flip_answer(text: str) -> str:
    """``text`` with its final answer reversed: the last marker's word replaced, else the
    opposite answer appended; a text that commits to no answer is returned unchanged."""
    answer = read_yes_no(text)
    if answer is None:
        return text
    markers = list(_FINAL.finditer(text))
    if markers:
        last = markers[-1]
        return text[:last.start(2)] + answer_word(not answer) + text[last.end(2):]
    return text.rstrip() + "\n" + final_sentence(not answer)


def draft_pair(record: dict, draft: str, max_facts: int = 1) -> dict:
    """The Phase-C preference pair of ``record`` given the Phase-B model's ``draft``."""
    drafted = read_yes_no(draft)
    correct = drafted == record["answer"]
    rejected = flip_answer(draft) if correct else draft
    if read_yes_no(rejected) is None:  # a draft with no answer: reject the wrong one
        rejected = draft.rstrip() + "\n" + final_sentence(not record["answer"])
    return {"prompt": draft_prompt(record["question"], draft),
            "chosen": rationale(record, max_facts),
            "rejected": " " + rejected.strip(),
            "metadata": {"qid": record["qid"], "answer": record["answer"],
                         "draft_correct": correct, "draft_answer": drafted}}


def derangement(n: int, seed: int) -> list[int]:
    """A uniformly random single-cycle permutation of ``range(n)`` (Sattolo's algorithm):
    ``perm[i] != i`` for every i when n ≥ 2."""
    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        perm[i], perm[j] = perm[j], perm[i]
    return perm
