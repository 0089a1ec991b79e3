"""``lm:MODEL``: the pairwise judge with a local causal LM, scored by answer log-probs.

No text is generated. The rubric question is put in the model's chat template
with the assistant turn opened, and one forward pass gives the next-token
logits ``ℓ``; the answer is read from the answer tokens ("A"/"B", with or
without a leading space, combined by log-sum-exp):

    P(first better) = exp ℓ_A / (exp ℓ_A + exp ℓ_B).

Only the last position's logits are computed (``logits_to_keep=1``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefalign.errors import ModelError
from prefalign.judges.cache import JudgeStats
from prefalign.judges.pairwise import PairwiseLMJudge


def answer_token_ids(tokenizer, letter: str) -> list[int]:
    """Ids of the single-token spellings of ``letter`` ("A", " A")."""
    spellings = (letter, " " + letter)
    ids = {tuple(tokenizer.encode(text, add_special_tokens=False)) for text in spellings}
    single = sorted(i[0] for i in ids if len(i) == 1)
    if not single:
        raise ModelError(f"the judge model's tokenizer has no single token for '{letter}'")
    return single


def chat_prompt(tokenizer, question: str) -> str:
    """``question`` as a user turn with the assistant turn opened (plain text without a
    chat template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                             tokenize=False, add_generation_prompt=True)
    return f"{question}\nAnswer: "


class LogprobBackend:
    """Answers rendered questions with a local model's P("A") over {"A", "B"}."""

    def __init__(self, model, tokenizer, stats: JudgeStats, batch_size: int = 4):
        self.model, self.tokenizer, self.stats = model, tokenizer, stats
        self.batch_size = batch_size
        self.ids_a = answer_token_ids(tokenizer, "A")
        self.ids_b = answer_token_ids(tokenizer, "B")

    def __call__(self, questions: list[str]) -> list[tuple[float, str]]:
        encoded = [self.tokenizer.encode(chat_prompt(self.tokenizer, q), add_special_tokens=False)
                   for q in questions]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[tuple[float, str]] = [(0.5, "")] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for index, result in zip(chunk, self._batch([encoded[i] for i in chunk])):
                out[index] = result
        return out

    @torch.no_grad()
    def _batch(self, sequences: list[list[int]]) -> list[tuple[float, str]]:
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                            logits_to_keep=1).logits[:, -1].float()
        self.stats.requests += len(sequences)
        self.stats.prompt_tokens += int(mask.sum())
        log_a = torch.logsumexp(logits[:, self.ids_a], dim=-1)
        log_b = torch.logsumexp(logits[:, self.ids_b], dim=-1)
        p_a = torch.sigmoid(log_a - log_b).cpu().tolist()
        return [(p, f"P(A)={p:.4f}") for p in p_a]


def build_local_lm_judge(model: str, *, rubric: str | Path | None = None, device: str | None = None,
                         batch_size: int = 4, cache: bool = True,
                         cache_dir: str | Path | None = None, **_: object) -> PairwiseLMJudge:
    """``lm:MODEL``: any model ``prefalign.models.load.load_model`` reads (``embedded``,
    a path, a hub id); the cache is keyed by the weights' content hash."""
    from prefalign.models.dropout import disable_dropout
    from prefalign.models.fingerprint import model_fingerprint
    from prefalign.models.load import load_model

    lm, tokenizer = load_model(model, device=device)
    disable_dropout(lm)
    lm.eval()
    stats = JudgeStats()
    backend = LogprobBackend(lm, tokenizer, stats, batch_size)
    return PairwiseLMJudge(f"lm:{model}", f"lm:{model_fingerprint(lm)}", backend, stats,
                           rubric=rubric, cache=cache, cache_dir=cache_dir)
