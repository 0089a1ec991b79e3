"""``hf-rm:ID_OR_PATH``: a Hugging Face sequence-classification reward model.

A reward model on the Hub (e.g. OpenAssistant's DeBERTa reward models, or chat
reward models such as Skywork's) is an ``AutoModelForSequenceClassification``
with one output: the score of a (prompt, response) is that logit. A tokenizer
with a chat template gets the conversation (user prompt, assistant response);
one without gets the text pair (prompt, response), as the OpenAssistant models
were trained. A model with another architecture, or with more than one output
(a classifier), is not a reward model and is refused with one clear line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefalign.errors import ModelError
from prefalign.judges.cache import JudgeStats, text_hash
from prefalign.judges.pointwise import CachedPointwise, files_fingerprint, model_options, open_cache
from prefalign.judges.rubric import as_text

MAX_LENGTH = 1024


def check_reward_config(source: str, config) -> None:
    """A ``ModelError`` unless ``config`` is a sequence classifier with one output."""
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelError(f"{source} is not a reward model: its architecture is "
                         f"{', '.join(architectures) or 'unknown'} (expected an "
                         f"AutoModelForSequenceClassification with one output)")
    if getattr(config, "num_labels", 1) != 1:
        raise ModelError(f"{source} is not a reward model: its classification head has "
                         f"{config.num_labels} outputs (a reward model has one)")


def load_config(source: str):
    from transformers import AutoConfig

    if (Path(source) / "reward_model.json").is_file():
        raise ModelError(f"{source} is a prefalign reward model; judge with rm:{source}")
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load the reward model '{source}': {first}") from None


class HFRewardModelJudge(CachedPointwise):
    """Pointwise judge: the single logit of a sequence-classification model."""

    def __init__(self, source: str, *, device: str | None = None, batch_size: int = 8,
                 cache: bool = True, cache_dir: str | Path | None = None):
        config = load_config(source)
        check_reward_config(source, config)
        self.name, self.batch_size, self.stats = f"hf-rm:{source}", batch_size, JudgeStats()
        local = Path(source)
        fingerprint = (files_fingerprint(local) if local.is_dir()
                       else text_hash(source, getattr(config, "_commit_hash", None)))
        self.cache = open_cache(fingerprint, self.stats, cache, cache_dir)
        self._source, self._device = source, device
        self._model = self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self._source)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(self._source)
        model.config.pad_token_id = self._tokenizer.pad_token_id
        self._model = model.to(self._device or "cpu").eval()

    @torch.no_grad()
    def _score_batch(self, prompts: list, responses: list) -> list[float]:
        if self._model is None:
            self._load()
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            texts = [tok.apply_chat_template([{"role": "user", "content": as_text(p)},
                                              {"role": "assistant", "content": as_text(r)}],
                                             tokenize=False) for p, r in zip(prompts, responses)]
            batch = tok(texts, add_special_tokens=False, padding=True, truncation=True,
                        max_length=MAX_LENGTH, return_tensors="pt")
        else:
            batch = tok([as_text(p) for p in prompts], [as_text(r) for r in responses],
                        padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
        self.stats.prompt_tokens += int(batch["attention_mask"].sum())
        logits = self._model(**batch.to(self._model.device)).logits
        return [float(x) for x in logits[:, 0].float().cpu()]


def build_hf_rm_judge(source: str, **options) -> HFRewardModelJudge:
    """``hf-rm:ID_OR_PATH``: a hub id or a local directory."""
    return HFRewardModelJudge(source, **model_options(options))
