"""Reward-model training (``prefalign rm``): a scalar head on a causal LM backbone.

The reward ``r(x, y) = w·h_last(x ⊕ y) + b`` reads the backbone's final hidden
state at the last real token (``prefalign.models.ScalarHeadModel``; Ouyang et
al. 2022, arXiv 2203.02155, §3.5). Three ways to train it (``tuning``):
``lora`` (adapters + head), ``full`` (every weight) and ``frozen`` (the head
alone, on backbone features computed once: ``prefalign.rewards.features``). Two
objectives: pairwise Bradley-Terry on preference pairs and regression on rated
responses (``reward_algorithms.py``). ``ensemble.k = K`` trains K members with
seeds ``seed, seed+1, ...`` (initialisation and data order), each in
``runs/<name>/member-<i>/``; the saved model in ``runs/<name>/final/`` scores
with ``mean − λ·std`` (``prefalign.rewards``). The held-out records are written
to ``runs/<name>/heldout.jsonl`` for ``prefalign eval rm``. The run follows the
stage lifecycle (``lifecycle.py``); the backbone loads through ``load_policy``
(dropout off unless ``model.dropout``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from prefalign.config import RewardConfig, TrainConfig
from prefalign.data.load import write_jsonl
from prefalign.data.tokenize import encode_dataset, encode_preference
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.loop import TrainResult, seed_everything
from prefalign.engine.rundir import RunDir, atomic_write_json
from prefalign.errors import ConfigError, DataError
from prefalign.eval.rm import pairwise_accuracy, pairwise_metrics, pearson
from prefalign.log import say
from prefalign.models.heads import HEAD_CONFIG, ScalarHeadModel
from prefalign.models.load import load_tokenizer
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import supports_mask_4d
from prefalign.rewards.ensemble import ensemble_scores
from prefalign.rewards.features import (
    Tokenization,
    cached_last_token_features,
    encode_response,
    last_token_features,
)
from prefalign.rewards.model import write_metadata
from prefalign.stages.common import load_policy
from prefalign.stages.lifecycle import Lifecycle
from prefalign.stages.reward_algorithms import (
    FeaturePairs,
    FeatureRated,
    PairwiseRewardAlgorithm,
    RegressionRewardAlgorithm,
    TokenPairs,
    TokenRated,
)

RECORD_KIND = {"pairwise": "preference", "regression": "rated"}
HELD_OUT_FILE = "heldout.jsonl"


def check_config(cfg: RewardConfig) -> None:
    """Refuse settings that contradict each other, before any model is loaded."""
    if cfg.tuning == "lora" and cfg.model.lora is None:
        raise ConfigError("tuning=lora needs model.lora settings (or choose tuning=full "
                          "or tuning=frozen)")
    if cfg.objective in ("process", "outcome") and cfg.ensemble.k > 1:
        raise ConfigError(f"objective={cfg.objective} trains one model; ensemble.k must be 1")
    if cfg.model.qlora and cfg.tuning != "lora":
        raise ConfigError(f"model.qlora trains LoRA adapters; it cannot be combined with "
                          f"tuning={cfg.tuning}")


def _member_runs(run: RunDir, k: int) -> list[RunDir]:
    return [run] if k == 1 else [RunDir(run.root / f"member-{i}") for i in range(k)]


def tokenization_of(cfg: RewardConfig) -> Tokenization:
    return Tokenization(max_length=cfg.data.max_length,
                        max_prompt_length=cfg.data.max_prompt_length,
                        truncation=cfg.data.truncation,
                        use_chat_template=cfg.data.use_chat_template)


def encode_rated(record: dict, tokenizer, settings: Tokenization) -> dict[str, Any]:
    """``input_ids`` of ``prompt + response`` and its ``score``."""
    return {"input_ids": encode_response(record["prompt"], record["response"], tokenizer,
                                         settings), "score": float(record["score"])}


@dataclass
class Encoded:
    """Training and held-out examples of one objective."""

    train: list[dict]
    held_out: list[dict]
    skipped: dict[str, int]


def encode_records(cfg: RewardConfig, tokenizer, train: list[dict],
                   held_out: list[dict]) -> Encoded:
    """Tokenised pairs (pairwise) or rated responses (regression); skips are reported."""
    settings = tokenization_of(cfg)
    if cfg.objective == "pairwise":
        kwargs = {"tokenizer": tokenizer, **settings.to_dict()}
        encode = encode_preference
    else:
        kwargs = {"tokenizer": tokenizer, "settings": settings}
        encode = encode_rated
    examples, report = encode_dataset(train, encode, **kwargs)
    eval_examples, eval_report = encode_dataset(held_out, encode, **kwargs)
    for label, rep in (("train", report), ("eval", eval_report)):
        if rep.skipped:
            say("rm", f"{label}: {rep.summary()}")
    if not examples:
        raise DataError(f"{cfg.data.train_name}: no usable training records ({report.summary()})")
    return Encoded(examples, eval_examples, report.counts)


def score_statistics(examples: list[dict]) -> tuple[float, float]:
    """Mean and (population) std of training scores; refuses constant scores."""
    scores = [e["score"] for e in examples]
    std = statistics.pstdev(scores)
    if std <= 0:
        raise DataError(f"every training score equals {scores[0]}; a regression reward "
                        f"model needs scores that vary")
    return statistics.fmean(scores), std


class FeatureCache:
    """Last-token features of a frozen backbone, computed once for every member."""

    def __init__(self, model: ScalarHeadModel, pad_id: int, batch_size: int, on_disk: bool):
        self.model, self.pad_id, self.batch_size = model, pad_id, batch_size
        self.on_disk = on_disk
        self.seconds, self.from_disk = 0.0, 0

    def features(self, sequences: list[list[int]]) -> torch.Tensor:
        if not sequences:
            return torch.zeros(0, self.model.hidden_size)
        started = time.perf_counter()
        if self.on_disk:
            values, hit = cached_last_token_features(self.model, sequences, self.pad_id,
                                                     self.batch_size)
            self.from_disk += len(sequences) if hit else 0
        else:
            values = last_token_features(self.model, sequences, self.pad_id, self.batch_size)
        self.seconds += time.perf_counter() - started
        return values

    def pairs(self, examples: list[dict], use_margin: bool) -> FeaturePairs:
        chosen = self.features([e["prompt_ids"] + e["chosen_ids"] for e in examples])
        rejected = self.features([e["prompt_ids"] + e["rejected_ids"] for e in examples])
        margins = None
        if use_margin and examples and all("margin" in e for e in examples):
            margins = torch.tensor([e["margin"] for e in examples], dtype=torch.float32)
        return FeaturePairs(chosen, rejected, margins)

    def rated(self, examples: list[dict]) -> FeatureRated:
        return FeatureRated(self.features([e["input_ids"] for e in examples]),
                            torch.tensor([e["score"] for e in examples], dtype=torch.float32))


def _build_algorithm(cfg: RewardConfig, sources: tuple, seed: int,
                     stats: tuple[float, float] | None):
    train, held_out = sources
    if cfg.objective == "pairwise":
        return PairwiseRewardAlgorithm(train, held_out, cfg.train.batch_size, seed,
                                       cfg.loss.use_margin, cfg.loss.center_coef)
    return RegressionRewardAlgorithm(train, held_out, cfg.train.batch_size, seed, *stats)


def _token_sources(cfg: RewardConfig, encoded: Encoded, pad_id: int, model) -> tuple:
    if cfg.objective != "pairwise":
        return TokenRated(encoded.train, pad_id), TokenRated(encoded.held_out, pad_id)
    sharing = cfg.prefix_sharing and supports_mask_4d(model.backbone)
    return (TokenPairs(encoded.train, pad_id, sharing),
            TokenPairs(encoded.held_out, pad_id, sharing))


def _load_backbone(cfg: RewardConfig, trainable: bool):
    """``(causal_lm, ScalarHeadModel, tokenizer)`` through ``load_policy`` (dropout off
    unless ``model.dropout``), with LoRA only when tuning=lora."""
    model_cfg = cfg.model.model_copy(update={
        "lora": cfg.model.lora if cfg.tuning == "lora" else None,
        "gradient_checkpointing": cfg.model.gradient_checkpointing and trainable})
    causal_lm, tokenizer = load_policy(model_cfg)
    model = ScalarHeadModel.from_causal_lm(causal_lm)
    if not trainable:
        model.freeze_backbone()
    return causal_lm, model, tokenizer


def _eval_values(algorithm) -> list[list[float]] | None:
    rewards = getattr(algorithm, "eval_rewards", None)
    if rewards is not None:
        return [rewards[0].tolist(), rewards[1].tolist()]
    predictions = getattr(algorithm, "eval_predictions", None)
    return None if predictions is None else [predictions.tolist()]


def ensemble_eval(cfg: RewardConfig, member_values: list[list[list[float]]],
                  held_out: list[dict]) -> dict[str, float]:
    """Held-out metrics of the members' mean (and penalised mean) score."""
    if not member_values or any(v is None for v in member_values):
        return {}
    stacked = [torch.tensor(part) for part in zip(*member_values)]
    if cfg.objective == "pairwise":
        n = stacked[0].shape[1]
        scores = ensemble_scores(torch.cat(stacked, dim=1), cfg.ensemble.penalty)
        metrics = pairwise_metrics(scores.mean[:n], scores.mean[n:])
        if cfg.ensemble.k > 1:
            metrics.update(penalised_accuracy=pairwise_accuracy(scores.penalised[:n],
                                                                scores.penalised[n:]),
                           ensemble_std_mean=float(scores.std.mean()))
        return metrics
    scores = ensemble_scores(stacked[0], cfg.ensemble.penalty)
    return {"pearson": pearson(scores.mean, torch.tensor([e["score"] for e in held_out])),
            "responses": len(held_out)}


def _train_member(life: Lifecycle, index: int, member_run: RunDir, final_dir, sources,
                  frozen: ScalarHeadModel | None, encoded: Encoded,
                  stats) -> tuple[TrainResult, list | None, int]:
    """Train one member; its result, held-out values and trainable parameter count."""
    cfg = life.cfg
    seed = cfg.train.seed + index
    seed_everything(seed)
    train_cfg = TrainConfig.model_validate({**cfg.train.model_dump(), "seed": seed})
    if frozen is not None:
        model = ScalarHeadModel(frozen.backbone, frozen.hidden_size, frozen.source)
        trained: torch.nn.Module = model.head
    else:
        causal_lm, model, tokenizer = _load_backbone(cfg, trainable=True)
        trained = model
        sources = _token_sources(cfg, encoded, tokenizer.pad_token_id, model)
    algorithm = _build_algorithm(cfg, sources, seed, stats)
    has_checkpoint = bool(list_checkpoints(member_run.checkpoints))
    result = life.train(trained, algorithm, train_cfg, member_run,
                        resume=life.resume and has_checkpoint)
    values = _eval_values(algorithm)
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)

    def save() -> None:
        if frozen is not None:
            model.save(final_dir)
        else:
            save_model(causal_lm, tokenizer, final_dir, scalar_head=model)
        atomic_write_json(member_run.root / "done.json", {"step": result.step,
                                                          "eval": result.eval_metrics,
                                                          "eval_values": values,
                                                          "trainable_parameters": trainable})

    life.on_main(save)
    return result, values, trainable


def _feature_sources(life: Lifecycle, frozen: ScalarHeadModel, pad_id: int,
                     encoded: Encoded) -> tuple[tuple, FeatureCache]:
    """Training and held-out sources of cached backbone features (tuning=frozen)."""
    cfg = life.cfg
    cache = FeatureCache(frozen, pad_id, cfg.feature_batch_size, cfg.cache_features)
    if cfg.objective == "pairwise":
        sources = (cache.pairs(encoded.train, cfg.loss.use_margin),
                   cache.pairs(encoded.held_out, cfg.loss.use_margin))
    else:
        sources = (cache.rated(encoded.train), cache.rated(encoded.held_out))
    life.say(f"backbone features of {len(encoded.train)} + {len(encoded.held_out)} examples "
             f"in {cache.seconds:.1f}s ({cache.from_disk} sequences from the feature cache)")
    return sources, cache


def _member_progress(cfg: RewardConfig) -> bool:
    members = _member_runs(RunDir(cfg.run_dir), cfg.ensemble.k)
    return any(list_checkpoints(m.checkpoints) or (m.root / "done.json").exists()
               for m in members)


def run_reward(cfg: RewardConfig, resume: bool = False,
               on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a reward model (or ensemble); the result lands in ``runs/<name>/final``."""
    check_config(cfg)
    if cfg.objective in ("process", "outcome"):
        from prefalign.stages.step_reward import run_step_reward

        return run_step_reward(cfg, resume, on_step_end)
    started = time.perf_counter()
    life = Lifecycle(cfg, "rm", resume, on_step_end)
    run = life.setup(progress=_member_progress(cfg))
    train_records, eval_records = life.load_data(RECORD_KIND[cfg.objective])
    frozen = None
    if cfg.tuning == "frozen":
        _, frozen, tokenizer = _load_backbone(cfg, trainable=False)
    else:
        tokenizer = load_tokenizer(cfg.model.name)
    encoded = encode_records(cfg, tokenizer, train_records, eval_records)
    stats = score_statistics(encoded.train) if cfg.objective == "regression" else None
    sources, cache = None, None
    if frozen is not None:
        sources, cache = _feature_sources(life, frozen, tokenizer.pad_token_id, encoded)
    if eval_records:
        life.on_main(lambda: write_jsonl(eval_records, run.root / HELD_OUT_FILE))
    life.write_manifest({"train": train_records, "eval": eval_records},
                        train_examples=len(encoded.train), eval_examples=len(encoded.held_out),
                        skipped=encoded.skipped, tuning=cfg.tuning, objective=cfg.objective,
                        ensemble_k=cfg.ensemble.k)
    k = cfg.ensemble.k
    member_names = ["."] if k == 1 else [f"member-{i}" for i in range(k)]
    result, member_values, trainable = TrainResult(step=0), [], 0
    for index, member_run in enumerate(_member_runs(run, k)):
        member_run.create()
        final_dir = (run.final / member_names[index]).resolve()
        done = member_run.root / "done.json"
        if resume and done.exists() and (final_dir / HEAD_CONFIG).exists():
            record = json.loads(done.read_text())
            member_values.append(record.get("eval_values"))
            trainable += record.get("trainable_parameters", 0)
            continue
        result, values, count = _train_member(life, index, member_run, final_dir, sources,
                                              frozen, encoded, stats)
        member_values.append(values)
        trainable += count
    metrics = ensemble_eval(cfg, member_values, eval_records_used(encoded, eval_records))
    metrics["train_time_s"] = round(time.perf_counter() - started, 2)
    metrics["trainable_parameters"] = trainable  # over all members
    if cache is not None:
        metrics["feature_time_s"] = round(cache.seconds, 2)
    metadata = dict(objective=cfg.objective, tuning=cfg.tuning, members=member_names,
                    penalty=cfg.ensemble.penalty, tokenization=tokenization_of(cfg),
                    backbone=cfg.model.name, score_mean=stats[0] if stats else None,
                    score_std=stats[1] if stats else None)
    return life.finish(result, save=lambda: write_metadata(run.final, **metadata),
                       figures=("loss",) if k == 1 else (), eval_metrics=metrics)


def eval_records_used(encoded: Encoded, eval_records: list[dict]) -> list[dict]:
    """The held-out records that survived encoding, in the order of their examples."""
    return [eval_records[e["index"]] for e in encoded.held_out]

