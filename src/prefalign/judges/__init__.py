"""Judges: reward models, task verifiers and language models behind one interface.

``build_judge(spec)`` turns a spec string (``rm:PATH``, ``hf-rm:ID``,
``verifier:TASK``, ``lm:MODEL``, ``http:URL[#model]``) into a ``PointwiseJudge``
(``score``) or a ``PairwiseJudge`` (``compare`` → ``PairwiseVerdict``, asked in
both orders). Every judge counts its work in ``stats`` (``JudgeStats``) and,
except verifiers, caches judgments by (judge, prompt, responses)
(``JudgeCache``). ``judge_agreement`` measures a judge against gold labels.
"""

from prefalign.judges.base import (
    JUDGE_KINDS,
    Judge,
    PairwiseJudge,
    PairwiseVerdict,
    PointwiseJudge,
    build_judge,
    is_pairwise,
    parse_spec,
    register_judge_kind,
)
from prefalign.judges.cache import JudgeCache, JudgeStats

__all__ = ["JUDGE_KINDS", "Judge", "JudgeCache", "JudgeStats", "PairwiseJudge",
           "PairwiseVerdict", "PointwiseJudge", "build_judge", "is_pairwise", "parse_spec",
           "register_judge_kind"]
