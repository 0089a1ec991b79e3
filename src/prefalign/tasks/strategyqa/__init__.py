"""StrategyQA (Geva et al. 2021): implicit multi-hop yes/no questions.

``data`` reads and checks the rows, ``answers`` reads a yes/no out of free text
(the verifier), ``formats`` writes the ask-and-draft recipe's prompts, rationales,
drafts and preference pairs, ``task`` registers the ``strategyqa`` task.
"""

from prefalign.tasks.strategyqa.answers import StrategyQAVerifier, read_yes_no
from prefalign.tasks.strategyqa.data import content_key, load_strategyqa
from prefalign.tasks.strategyqa.formats import (
    derangement,
    draft_pair,
    draft_prompt,
    flip_answer,
    rationale,
)
from prefalign.tasks.strategyqa.task import TASK, completion_of, prompt_of

__all__ = ["TASK", "StrategyQAVerifier", "completion_of", "content_key", "derangement",
           "draft_pair", "draft_prompt", "flip_answer", "load_strategyqa", "prompt_of",
           "rationale", "read_yes_no"]
