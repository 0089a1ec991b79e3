"""Step reward models (``prefalign rm objective=process|outcome``): PRM and ORM.

Both read a scalar head at every step boundary of a step-split solution (one
forward pass; ``prefalign.rewards.steps``) and train on ``steps`` records. The
process reward model learns every step's label, the outcome reward model only
the final answer's, at the last step (``prefalign.losses.process``) — the same
architecture, data and budget, so the two differ only in the supervision.
``tuning`` as for other reward models: ``lora`` (adapters + head), ``full`` or
``frozen`` (the head alone on boundary features computed once and kept in the
feature cache, so a PRM and an ORM on the same data share one backbone pass).
The saved model (``runs/<name>/final``) records ``aggregation`` (min, mean,
product or last), how its step scores become a solution's score.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prefalign.config import RewardConfig
from prefalign.data.schema import UnusableRecord
from prefalign.data.tokenize import encode_dataset
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.loop import TrainResult
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import DataError
from prefalign.models.save import save_model
from prefalign.rewards.step_model import STEP_MODEL_FILE
from prefalign.rewards.steps import EncodedSteps, cached_boundary_features, encode_steps
from prefalign.stages.lifecycle import Lifecycle
from prefalign.stages.step_reward_algorithms import FeatureSteps, StepRewardAlgorithm, TokenSteps


def encode_step_record(record: dict, tokenizer, max_length: int) -> dict:
    """Token ids, boundaries, labels and answer label of one ``steps`` record."""
    if "labels" not in record or "final_correct" not in record:
        raise UnusableRecord("no labels")
    encoded = encode_steps(record["prompt"], record["steps"], tokenizer, max_length)
    return {"input_ids": encoded.input_ids, "boundaries": encoded.boundaries,
            "labels": record["labels"], "final_correct": record["final_correct"]}


def _encode(life: Lifecycle, records: list[dict], tokenizer, label: str) -> list[dict]:
    examples, report = encode_dataset(records, encode_step_record, tokenizer=tokenizer,
                                      max_length=life.cfg.data.max_length)
    if report.skipped:
        life.say(f"{label}: {report.summary()}")
    return examples


def write_step_metadata(path, cfg: RewardConfig) -> None:
    """``step_reward_model.json``: objective, aggregation, tuning, backbone, max length."""
    atomic_write_json(path / STEP_MODEL_FILE, {
        "objective": cfg.objective, "aggregation": cfg.aggregation, "tuning": cfg.tuning,
        "backbone": cfg.model.name, "max_length": cfg.data.max_length})


def run_step_reward(cfg: RewardConfig, resume: bool = False,
                    on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a PRM (``objective=process``) or ORM (``outcome``); see the module docstring."""
    from prefalign.stages.reward import _load_backbone

    started = time.perf_counter()
    life = Lifecycle(cfg, "rm", resume, on_step_end)
    run = life.setup()
    train_records, eval_records = life.load_data("steps")
    trainable = cfg.tuning != "frozen"
    causal_lm, model, tokenizer = _load_backbone(cfg, trainable=trainable)
    train = _encode(life, train_records, tokenizer, "train")
    held_out = _encode(life, eval_records, tokenizer, "eval")
    if not train:
        raise DataError(f"{cfg.data.train}: no usable step-labelled solutions (each needs "
                        "steps, labels and final_correct, and must fit data.max_length)")
    pad_id = tokenizer.pad_token_id
    extra = {}
    if trainable:
        sources = TokenSteps(train, pad_id), TokenSteps(held_out, pad_id)
        trained = model
    else:
        feature_start = time.perf_counter()
        encoded = [EncodedSteps(e["input_ids"], e["boundaries"]) for e in train + held_out]
        features, hit = cached_boundary_features(model, encoded, pad_id,
                                                 cfg.feature_batch_size)
        extra["feature_time_s"] = round(time.perf_counter() - feature_start, 2)
        life.say(f"boundary features of {len(train)} + {len(held_out)} solutions in "
                 f"{extra['feature_time_s']:.1f}s" + (" (from the feature cache)" if hit else ""))
        sources = (FeatureSteps(features[:len(train)], train),
                   FeatureSteps(features[len(train):], held_out))
        trained = model.head
    life.write_manifest({"train": train_records, "eval": eval_records},
                        train_examples=len(train), eval_examples=len(held_out),
                        tuning=cfg.tuning, objective=cfg.objective)
    algorithm = StepRewardAlgorithm(*sources, cfg.train.batch_size, cfg.train.seed,
                                    cfg.objective)
    result = life.train(trained, algorithm, resume=resume and bool(
        list_checkpoints(run.checkpoints)))
    metrics = {**(result.eval_metrics or {}), **extra,
               "train_time_s": round(time.perf_counter() - started, 2)}

    def save() -> None:
        if trainable:
            save_model(causal_lm, tokenizer, run.final, scalar_head=model)
        else:
            model.source = cfg.model.name
            model.save(run.final)
        write_step_metadata(run.final, cfg)

    return life.finish(result, save=save, eval_metrics=metrics)
