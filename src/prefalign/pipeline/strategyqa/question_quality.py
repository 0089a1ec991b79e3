"""Are Phase C's clarifying questions better than Phase B's? A pairwise judge decides.

For every evaluation question where both replies state sub-questions (the text
after ``Sub-questions:`` up to the end of its line), the judge
(``prefalign.judges``: ``lm:MODEL`` or ``http:URL``) compares Phase C's list
(row C) with Phase B's (its draft) in both orders under the
``clarifying_questions`` rubric. The win rate of C counts a tie as ½; its
interval is Wilson's on the decided comparisons; the share of position flips
(the verdict changes with the order) says how far the judge can be trusted.
"""

from __future__ import annotations

import re
from importlib import resources

from prefalign.errors import ConfigError
from prefalign.intervals import wilson_interval

_SUB_QUESTIONS = re.compile(r"Sub-questions:\s*(.+)")


def sub_questions(reply: str) -> str | None:
    """The sub-questions a reply states, or ``None``."""
    found = _SUB_QUESTIONS.search(reply)
    return found.group(1).strip() if found and found.group(1).strip() else None


def rubric_path() -> str:
    return str(resources.files("prefalign.judges").joinpath("rubrics/clarifying_questions.md"))


def compare_questions(judge_spec: str, questions: list[str], phase_c: list[str],
                      phase_b: list[str]) -> dict:
    """Win rate of Phase C's sub-questions against Phase B's, by the judge ``judge_spec``."""
    from prefalign.judges.base import build_judge, is_pairwise

    rows = [(q, c, b) for q, c, b in zip(questions, map(sub_questions, phase_c),
                                         map(sub_questions, phase_b)) if c and b]
    result = {"judge": judge_spec, "compared": len(rows), "questions": len(questions)}
    if not rows:
        return result
    judge = build_judge(judge_spec, rubric=rubric_path())
    if not is_pairwise(judge):
        raise ConfigError(f"eval.question_judge: {judge_spec} is not a pairwise judge "
                          "(lm:MODEL or http:URL)")
    verdicts = judge.compare([q for q, _, _ in rows], [c for _, c, _ in rows],
                             [b for _, _, b in rows])
    wins = sum(not v.tie and v.p_first > 0.5 for v in verdicts)
    ties = sum(v.tie for v in verdicts)
    decided = len(verdicts) - ties
    low, high = wilson_interval(wins, decided) if decided else (0.0, 1.0)
    result.update(c_wins=wins, ties=ties, b_wins=decided - wins,
                  win_rate=(wins + ties / 2) / len(verdicts),
                  decided_win_rate=wins / decided if decided else None,
                  decided_ci95=[low, high],
                  position_flips=sum(v.position_flip for v in verdicts) / len(verdicts))
    return result
