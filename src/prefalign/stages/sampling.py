"""Several sampled responses per prompt from a model, seeded per chunk of prompts.

The data-making stages (``feedback``: AI-feedback labels, ``synth_sft``: judged
SFT data, :func:`add_reference_samples`: XPO's reference samples) see a model
only through a ``Sampler``: ``(records, seed) -> texts``,
``K`` responses per record. ``PolicySampler`` is the one that loads a model
(any name ``prefalign.models.load`` accepts) and samples through the rollout
engine. Prompts are processed in fixed chunks (``chunk_seed``): chunk ``c``
holds prompts ``[c·B, (c+1)·B)`` and is sampled with a seed derived from
``(seed, c)``, so a resumed run regenerates exactly what an uninterrupted one
would have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefalign.data.schema import REFERENCE_SAMPLE
from prefalign.models.dropout import disable_dropout
from prefalign.models.load import load_model, resolve_model_source
from prefalign.rollout import SamplingSettings, build_engine, encode_prompts

Sampler = Callable[[Sequence[dict], int], list[list[str]]]


def chunk_seed(seed: int, chunk: int) -> int:
    """The sampling seed of chunk ``chunk``: distinct per chunk, a pure function of both."""
    return (seed * 1_000_003 + chunk) % (2**31 - 1)


def chunks(count: int, size: int) -> list[range]:
    """Index ranges ``[c·size, (c+1)·size)`` covering ``range(count)``."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


@dataclass(frozen=True)
class SamplerSettings:
    """How responses are sampled: ``samples`` per prompt, at most ``max_new_tokens``
    tokens each, at ``temperature`` (0: greedy, every sample the same) and ``top_p``;
    ``batch_size`` prompts per generate call; ``engine`` as in ``rollout.build_engine``."""

    samples: int = 2
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 8
    engine: str = "auto"
    use_chat_template: bool = True


class PolicySampler:
    """A ``Sampler`` on a loaded model (dropout off, eval mode)."""

    def __init__(self, model: str, settings: SamplerSettings, dtype: str = "auto"):
        lm, self.tokenizer = load_model(model, dtype=dtype)
        disable_dropout(lm)
        self.settings = settings
        self.engine = build_engine(settings.engine, lm, self.tokenizer,
                                   model_source=resolve_model_source(model),
                                   batch_size=settings.batch_size)
        self.sampling = SamplingSettings(num_samples=settings.samples,
                                         max_new_tokens=settings.max_new_tokens,
                                         temperature=settings.temperature,
                                         top_p=settings.top_p)

    def __call__(self, records: Sequence[dict], seed: int) -> list[list[str]]:
        ids = encode_prompts(records, self.tokenizer,
                             use_chat_template=self.settings.use_chat_template)
        groups = self.engine.generate(ids, self.sampling, seed)
        return [[completion.text.strip() for completion in group] for group in groups]


def prompt_as_text(prompt: str | list[dict]) -> str:
    """A prompt as a judge reads it: a string as is; chat messages as a transcript of
    ``Role: content`` turns separated by blank lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def add_reference_samples(records: Sequence[dict], sampler: Sampler, seed: int = 0,
                          chunk_size: int = 8,
                          on_progress: Callable[[int, int], None] | None = None
                          ) -> tuple[list[dict], int]:
    """Each record with ``reference_sample``: the first of ``sampler``'s replies to its
    prompt, which the ``xpo`` loss reads as ``ỹ ~ π_ref(·|x)`` (Xie et al. 2024,
    arXiv 2405.21046). ``sampler`` must sample from the run's reference model (the
    starting policy), at temperature 1 and top-p 1, so the sample is π_ref's own.

    Chunk ``c`` of ``chunk_size`` records is sampled with ``chunk_seed(seed, c)``, so
    the result is a pure function of the records, the model and ``seed``. A record whose
    sample is empty text (the model ended at once) cannot be stored and is dropped.
    Returns the records with samples, in order, and how many were dropped.
    """
    sampled, empty = [], 0
    for number, indices in enumerate(chunks(len(records), chunk_size)):
        batch = [records[i] for i in indices]
        for record, group in zip(batch, sampler(batch, chunk_seed(seed, number))):
            if group[0]:
                sampled.append({**record, REFERENCE_SAMPLE: group[0]})
            else:
                empty += 1
        if on_progress is not None:
            on_progress(indices.stop, len(records))
    return sampled, empty
