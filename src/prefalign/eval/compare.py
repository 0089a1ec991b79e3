"""Several policies on the same prompts with the same sampling seeds, judged alike.

``compare_policies`` runs, one model in memory at a time:

1. every policy answers every prompt (greedy by default, else sampled with seed
   ``seed``; a best-of-n policy draws ``n`` and keeps its reranking judge's choice,
   see ``prefalign.eval.best_of``);
2. every plain policy draws ``kl_samples`` more answers per prompt at temperature 1
   (seed ``seed + 1``) and scores their tokens; the reference scores the same
   tokens, giving the KL estimators of ``prefalign.eval.stats``;
3. every pointwise judge scores every answer; every pairwise judge compares each
   policy's answer with the baseline's (policy shown as A, both orders asked);
4. ``prefalign.eval.compare_table`` turns it all into one row per policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefalign.errors import ConfigError
from prefalign.eval.best_of import best_of_n
from prefalign.eval.compare_table import comparison_rows
from prefalign.eval.judging import check_judges, pairwise, pointwise, score
from prefalign.eval.policies import LoadedPolicy, PolicySource, free, prompt_text
from prefalign.eval.stats import kl_estimates
from prefalign.log import say
from prefalign.rollout.types import SamplingSettings


@dataclass
class CompareSettings:
    """Answers: ``max_new_tokens``, ``temperature`` (0 greedy), ``top_p``, ``seed``;
    KL: ``kl_samples`` per prompt (0: no KL); ``batch_size`` for generation and
    scoring; ``dtype`` of the models; ``resamples`` of the bootstrap intervals;
    ``max_prompt_length``: prompts keep their last N tokens (None: whole)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    kl_samples: int = 1
    seed: int = 0
    batch_size: int = 16
    dtype: str = "auto"
    resamples: int = 2000
    max_prompt_length: int | None = None


@dataclass
class Candidate:
    """A policy to evaluate: a model, optionally as best-of-``best_of`` reranked by the
    pointwise judge ``rerank`` (rejection sampling when ``threshold`` is set)."""

    source: PolicySource
    label: str
    best_of: int = 1
    rerank: object | None = None
    threshold: float | None = None


@dataclass
class PolicyAnswers:
    """One policy's answers, KL samples and judgments."""

    label: str
    model: str
    best_of: int
    texts: list[str]
    lengths: list[int]
    kl_prompt_ids: list[list[int]] = field(default_factory=list)
    kl_completions: list[list[int]] = field(default_factory=list)
    kl_policy_logps: list[list[float]] = field(default_factory=list)
    kl: dict[str, float] = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)
    verdicts: dict[str, list] = field(default_factory=dict)


@dataclass
class Comparison:
    """The table (``rows``), every answer, and what produced them."""

    rows: list[dict]
    answers: list[PolicyAnswers]
    prompts: list[str]
    baseline: str
    reference: str
    judges: list[str]
    settings: CompareSettings


def _answer(policy: LoadedPolicy, candidate: Candidate, prompt_ids, prompts, records,
            settings: CompareSettings) -> PolicyAnswers:
    sampling = SamplingSettings(1, settings.max_new_tokens, settings.temperature, settings.top_p)
    if candidate.best_of > 1:
        chosen = best_of_n(policy, prompt_ids, prompts, records, candidate.rerank,
                           candidate.best_of, sampling, settings.seed, candidate.threshold)
    else:
        chosen = [group[0] for group in policy.sample(prompt_ids, sampling, settings.seed)]
    answers = PolicyAnswers(candidate.label, candidate.source.model, candidate.best_of,
                            [c.text for c in chosen], [len(c.token_ids) for c in chosen])
    if candidate.best_of == 1 and settings.kl_samples > 0:
        draw = SamplingSettings(settings.kl_samples, settings.max_new_tokens, 1.0)
        groups = policy.sample(prompt_ids, draw, settings.seed + 1)
        answers.kl_prompt_ids = [ids for ids, g in zip(prompt_ids, groups) for _ in g]
        answers.kl_completions = [c.token_ids for g in groups for c in g]
        answers.kl_policy_logps = policy.token_logps(answers.kl_prompt_ids,
                                                     answers.kl_completions)
    return answers


def collect_answers(candidates: list[Candidate], records: list[dict],
                    settings: CompareSettings) -> list[PolicyAnswers]:
    """Every candidate's answers (and KL samples), loading each model once."""
    prompts = [prompt_text(r["prompt"]) for r in records]
    answers: dict[int, PolicyAnswers] = {}
    for model in dict.fromkeys(c.source.model for c in candidates):
        policy = LoadedPolicy(next(c.source for c in candidates if c.source.model == model),
                              settings.dtype, settings.batch_size)
        prompt_ids = policy.encode(records, settings.max_prompt_length)
        for index, candidate in enumerate(candidates):
            if candidate.source.model == model:
                started = time.perf_counter()
                answers[index] = _answer(policy, candidate, prompt_ids, prompts, records,
                                         settings)
                say("compare", f"{candidate.label}: {len(records)} answers "
                               f"({settings.kl_samples} KL samples each) in "
                               f"{time.perf_counter() - started:.0f}s")
        free(policy)
    return [answers[i] for i in range(len(candidates))]


def add_kl(answers: list[PolicyAnswers], reference: PolicySource, records: list[dict],
           settings: CompareSettings) -> None:
    """Fill ``kl`` of every policy with KL samples, scoring them with ``reference``."""
    sampled = [a for a in answers if a.kl_completions]
    if not sampled:
        return
    ref = LoadedPolicy(reference, settings.dtype, settings.batch_size)
    ref_prompts = ref.encode(records, settings.max_prompt_length)
    for answer in sampled:
        if answer.model == reference.model:
            ref_logps = answer.kl_policy_logps
        else:
            if answer.kl_prompt_ids[::settings.kl_samples] != ref_prompts:
                raise ConfigError(f"policy '{answer.label}' and reference '{reference.label}' "
                                  f"tokenize the prompts differently; the KL needs one "
                                  f"vocabulary")
            ref_logps = ref.token_logps(answer.kl_prompt_ids, answer.kl_completions)
        answer.kl = kl_estimates(answer.kl_policy_logps, ref_logps)
    free(ref)
    say("compare", f"KL of {len(sampled)} policies to {reference.label}")


def judge_answers(answers: list[PolicyAnswers], judges: list, records: list[dict],
                  baseline: int) -> None:
    """Pointwise scores of every answer; pairwise verdicts of each policy vs the baseline."""
    prompts = [prompt_text(r["prompt"]) for r in records]
    for judge in pointwise(judges):
        for answer in answers:
            answer.scores[judge.name] = score(judge, prompts, answer.texts, records)
        say("compare", f"scored by {judge.name}")
    base = answers[baseline]
    for judge in pairwise(judges):
        for index, answer in enumerate(answers):
            answer.verdicts[judge.name] = None if index == baseline else list(
                judge.compare(prompts, answer.texts, base.texts))
        say("compare", f"judged against {base.label} by {judge.name}")


def compare_policies(candidates: list[Candidate], records: list[dict], judges: list, *,
                     baseline: int = 0, reference: PolicySource | None = None,
                     settings: CompareSettings | None = None,
                     source: str = "prompts") -> Comparison:
    """Answer, score and tabulate (module docstring). ``reference`` defaults to the
    baseline's starting model, else the baseline itself."""
    settings = settings or CompareSettings()
    if not candidates:
        raise ConfigError("no policy to evaluate")
    if not records:
        raise ConfigError(f"{source}: no prompts")
    check_judges(judges, records, source)
    for candidate in candidates:
        if candidate.best_of > 1 and (candidate.rerank is None or hasattr(candidate.rerank,
                                                                          "compare")):
            raise ConfigError("best-of-n needs a pointwise --rerank judge (a reward model or "
                              "a verifier)")
    base = candidates[baseline].source
    reference = reference or PolicySource(base.start or base.model, base.start or base.model)
    answers = collect_answers(candidates, records, settings)
    add_kl(answers, reference, records, settings)
    judge_answers(answers, judges, records, baseline)
    rows = comparison_rows(answers, judges, baseline, settings.seed, settings.resamples)
    return Comparison(rows, answers, [prompt_text(r["prompt"]) for r in records],
                      answers[baseline].label, reference.label, [j.name for j in judges],
                      settings)
