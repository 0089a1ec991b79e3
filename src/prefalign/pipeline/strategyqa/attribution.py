"""How much of the final answer comes from the draft: integrated gradients before and after
Phase C.

For the first ``examples`` evaluation questions the input is Phase C's prompt
(question + " Student draft: " + draft + cue) followed by Phase C's own reply up
to its final answer word; the output is the log-probability of that word. The
same text is attributed under the Phase-B model (before DPO) and the Phase-C
model (after), so the two shares differ only by the weights. The draft share is
``Σ_{t∈draft} |a_t| / Σ_t |a_t|`` over every input token (``prefalign.eval.attribution``).
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from prefalign.engine.rundir import atomic_write_json
from prefalign.log import say
from prefalign.pipeline.strategyqa.config import StrategyQAPipelineConfig
from prefalign.pipeline.strategyqa.drafts import read_records
from prefalign.pipeline.strategyqa.generation import read_replies
from prefalign.tasks.strategyqa import draft_prompt
from prefalign.tasks.strategyqa.formats import DRAFT_SEPARATOR

_ANSWER_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
FALLBACK_PREFIX = " So the answer is"


def probe(prompt: str, reply: str) -> tuple[str, str]:
    """``(text before the answer word, the answer word)``: the reply cut before its last
    yes/no; a reply without one is replaced by ``FALLBACK_PREFIX`` and the word "no"."""
    words = list(_ANSWER_WORD.finditer(reply))
    if not words:
        return prompt + FALLBACK_PREFIX, "no"
    last = words[-1]
    return prompt + " " + reply[:last.start()].rstrip(), last.group(1).lower()


def draft_span(tokenizer, text: str, draft_text: str) -> tuple[int, int]:
    """Token positions ``[start, end)`` of the draft inside ``text`` (by character offsets)."""
    begin = text.index(DRAFT_SEPARATOR) + len(DRAFT_SEPARATOR)
    end = begin + len(draft_text)
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if b > begin and a < end]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)


def run_attribution(cfg: StrategyQAPipelineConfig, root: Path, models: dict[str, Path]) -> dict:
    """Draft shares under the Phase-B and Phase-C models; ``attribution/summary.json``."""
    from prefalign.eval.attribution import integrated_gradients
    from prefalign.models.load import load_model

    records = read_records(root / "drafts" / "eval_drafts.jsonl")[:cfg.attribution.examples]
    replies = read_replies(root / "eval" / "C_replies.jsonl")
    examples = []
    for record in records:
        prompt = draft_prompt(record["question"], record["draft"])
        text, word = probe(prompt, replies.get(record["qid"], ""))
        examples.append({"qid": record["qid"], "text": text, "word": word,
                         "draft": " ".join(record["draft"].split())})
    result: dict = {"examples": [], "steps": cfg.attribution.steps}
    for label, model in (("before", models["reasoning"]), ("after", models["dpo"])):
        lm, tokenizer = load_model(str(model), dtype="float32")
        for number, example in enumerate(examples):
            ids = tokenizer(example["text"])["input_ids"]
            target = tokenizer(" " + example["word"], add_special_tokens=False)["input_ids"][0]
            start, end = draft_span(tokenizer, example["text"], example["draft"])
            attribution = integrated_gradients(lm, ids, target, steps=cfg.attribution.steps)
            if label == "before":
                result["examples"].append({"qid": example["qid"], "word": example["word"],
                                           "draft_tokens": [start, end],
                                           "tokens": tokenizer.convert_ids_to_tokens(ids)})
            entry = result["examples"][number]
            entry[label] = {"draft_share": attribution.share(start, end),
                            "attributions": attribution.tokens.tolist(),
                            "output": attribution.output, "delta": attribution.delta}
            say("attribution", f"{label} {number + 1}/{len(examples)}: draft share "
                               f"{attribution.share(start, end):.3f}")
    for label in ("before", "after"):
        shares = [e[label]["draft_share"] for e in result["examples"]]
        result[label] = {"mean_draft_share": statistics.fmean(shares) if shares else 0.0,
                         "mean_abs_delta": statistics.fmean(abs(e[label]["delta"])
                                                            for e in result["examples"])
                         if shares else 0.0}
    atomic_write_json(root / "attribution" / "summary.json", result)
    return {label: round(result[label]["mean_draft_share"], 4) for label in ("before", "after")}
