"""Policies to evaluate: where each comes from, how it answers, its token log-probs.

A policy spec is a run directory of any stage (its ``final/`` model; its starting
model, ``reference.model`` or else ``model.name`` of the run's ``config.yaml``, is
the default reference), a saved model, a saved LoRA adapter, ``embedded``,
``tiny`` or a hub id — anything ``prefalign.models.load.load_model`` takes.

Every policy answers the same tokenised prompts with the same sampling seed, so
differences between policies are the models' and not the draws'.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from prefalign.errors import ModelError
from prefalign.models.dropout import disable_dropout
from prefalign.models.load import load_model, resolve_model_source
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.rollout.batch import encode_prompts, right_pad
from prefalign.rollout.hf_engine import TransformersEngine
from prefalign.rollout.types import Completion, SamplingSettings


@dataclass(frozen=True)
class PolicySource:
    """``label`` shown in tables, ``model`` for ``load_model``, ``start`` the run's
    starting model (``None`` for a plain model)."""

    label: str
    model: str
    start: str | None = None


def prompt_text(prompt: str | list[dict]) -> str:
    """A prompt as judges read it: the string, the single user turn of a (system +) user
    prompt, or the turns as ``role: content`` lines."""
    if isinstance(prompt, str):
        return prompt
    turns = [m for m in prompt if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in turns)


def _starting_model(config_path: Path) -> str | None:
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ModelError(f"{config_path}: unreadable run config: {err}") from err
    reference = (config.get("reference") or {}).get("model")
    return reference or (config.get("model") or {}).get("name")


def resolve_policy(spec: str, label: str | None = None) -> PolicySource:
    """The ``PolicySource`` of a spec (module docstring); a missing path or a run
    without ``final/`` is a ``ModelError``. Nothing is loaded."""
    path = Path(spec).expanduser()
    is_run = (path / "config.yaml").is_file() and not (path / "config.json").is_file() \
        and not (path / "adapter_config.json").is_file()
    if is_run:
        final = path / "final"
        if not final.is_dir():
            raise ModelError(f"{spec} is a run directory without final/; finish the run first")
        return PolicySource(label or path.name, str(final), _starting_model(path / "config.yaml"))
    if spec not in ("embedded", "tiny"):
        resolve_model_source(spec)
    return PolicySource(label or spec, spec)


def free(*objects) -> None:
    """Drop references and return memory (CUDA cache included)."""
    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class LoadedPolicy:
    """A loaded causal LM that answers prompts and scores its own tokens."""

    def __init__(self, source: PolicySource, dtype: str = "auto", batch_size: int = 16):
        self.source = source
        self.lm, self.tokenizer = load_model(source.model, dtype=dtype)
        disable_dropout(self.lm)
        self.lm.requires_grad_(False).eval()
        self.engine = TransformersEngine(self.lm, self.tokenizer, batch_size)
        self.batch_size = batch_size

    @property
    def pad_id(self) -> int:
        return self.engine.pad_id

    def encode(self, records: list[dict],
               max_prompt_length: int | None = None) -> list[list[int]]:
        """Each record's prompt, chat-rendered for generation; longer than
        ``max_prompt_length`` tokens, its end is kept."""
        return encode_prompts(records, self.tokenizer, max_prompt_length=max_prompt_length,
                              truncation="keep_end")

    def sample(self, prompt_ids: list[list[int]], settings: SamplingSettings,
               seed: int) -> list[list[Completion]]:
        """``settings.num_samples`` completions per prompt, seeded."""
        return self.engine.generate(prompt_ids, settings, seed)

    @torch.no_grad()
    def token_logps(self, prompt_ids: list[list[int]],
                    completions: list[list[int]]) -> list[list[float]]:
        """``log π(y_t | x, y_<t)`` of every completion token (row ``i`` answers
        ``prompt_ids[i]``), at temperature 1."""
        scorer = CompletionLogprobModel(self.lm)
        device = next(self.lm.parameters()).device
        out: list[list[float]] = []
        for start in range(0, len(completions), self.batch_size):
            prompts = prompt_ids[start:start + self.batch_size]
            answers = completions[start:start + self.batch_size]
            ids, mask = right_pad([p + c for p, c in zip(prompts, answers)], self.pad_id)
            scored = torch.zeros_like(mask)
            for row, (p, c) in enumerate(zip(prompts, answers)):
                scored[row, len(p):len(p) + len(c)] = 1
            logps = scorer(ids.to(device), mask.to(device), scored.to(device)).float().cpu()
            out.extend(logps[row, len(p):len(p) + len(c)].tolist()
                       for row, (p, c) in enumerate(zip(prompts, answers)))
        return out
