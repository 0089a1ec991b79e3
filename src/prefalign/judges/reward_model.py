"""``rm:PATH``: a prefalign reward model as a pointwise judge.

Scores are the reward model's (``RewardModel.score``: the penalised ensemble
mean ``r̄ − λ·s`` for an ensemble), cached by (model files, prompt, response).
"""

from __future__ import annotations

from pathlib import Path

from prefalign.judges.cache import JudgeStats
from prefalign.judges.pointwise import CachedPointwise, files_fingerprint, model_options, open_cache


class RewardModelJudge(CachedPointwise):
    """Pointwise judge backed by ``prefalign.rewards.model.RewardModel``."""

    def __init__(self, path: str, *, device: str | None = None, batch_size: int = 8,
                 cache: bool = True, cache_dir: str | Path | None = None):
        from prefalign.rewards.model import RewardModel, read_metadata

        read_metadata(path)  # a clear ModelError before any weight is read
        self.name, self.batch_size, self.stats = f"rm:{path}", batch_size, JudgeStats()
        self.cache = open_cache(files_fingerprint(Path(path)), self.stats, cache, cache_dir)
        self._path, self._device, self._model = path, device, None
        self._load = RewardModel.load

    def _score_batch(self, prompts: list[str], responses: list[str]) -> list[float]:
        from prefalign.rewards.features import encode_responses

        if self._model is None:
            self._model = self._load(self._path, device=self._device)
        for group in self._model.backbones:  # input tokens, as each backbone reads them
            sequences = encode_responses(prompts, responses, group.tokenizer, group.tokenization)
            self.stats.prompt_tokens += sum(len(ids) for ids in sequences)
        return [float(x) for x in self._model.score(prompts, responses)]


def build_rm_judge(path: str, **options) -> RewardModelJudge:
    """``rm:PATH`` (a reward-model directory, e.g. ``runs/<name>/final``)."""
    return RewardModelJudge(path, **model_options(options))

