"""Supervised fine-tuning: next-token loss on completion tokens only.

``L = −(1/N) Σ_t log p(y_t | x, y_<t)`` over the N completion tokens of a
micro-batch (prompt tokens are context, never targets). Optional packing puts
several examples in one row with restarted position ids and a block-diagonal
mask, so no compute goes to padding.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from prefalign.config import SFTConfig
from prefalign.data.collate import collate_packed, collate_sft, pack_sft
from prefalign.data.tokenize import encode_dataset, encode_sft
from prefalign.engine.algorithm import StepOutput
from prefalign.log import say
from prefalign.engine.loop import Engine, TrainResult, seed_everything
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.report.curves import plot_training_curves
from prefalign.stages.common import (BatchPlan, fingerprints, load_policy, load_train_eval,
                                     prepare_run, to_device)


def sft_batch_loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
    """Sum of completion-token negative log-likelihoods and their count."""
    mask = batch["labels"] != -100
    logps = model(batch["input_ids"], batch.get("attention_mask"), mask,
                  position_ids=batch.get("position_ids"))
    return -(logps * mask).sum(), int(mask.sum())


class SFTAlgorithm:
    """Batches of encoded SFT examples and the completion-only NLL step."""

    def __init__(self, examples: list[dict], eval_examples: list[dict], pad_id: int,
                 batch_size: int, seed: int, packing: bool, max_length: int):
        self.pad_id = pad_id
        self.eval_examples = eval_examples
        self.batch_size = batch_size
        rows = pack_sft(examples, max_length) if packing else examples
        collate = collate_packed if packing else collate_sft
        self.plan = BatchPlan([len(r["input_ids"]) for r in rows], batch_size, seed,
                              lambda idx: collate([rows[i] for i in idx], pad_id))
        self.device = torch.device("cpu")

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> dict:
        return self.plan.batch(epoch, index)

    def step(self, model: torch.nn.Module, batch: dict) -> StepOutput:
        batch = to_device(batch, next(model.parameters()).device)
        total, count = sft_batch_loss(model, batch)
        loss = total / max(count, 1)
        return StepOutput(loss=loss, metrics={"completion_tokens": float(count)},
                          tokens=int(batch["input_ids"].numel()))

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        if not self.eval_examples:
            return {}
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(self.eval_examples), self.batch_size):
            chunk = self.eval_examples[start:start + self.batch_size]
            batch = to_device(collate_sft(chunk, self.pad_id), device)
            nll, n = sft_batch_loss(model, batch)
            total, count = total + float(nll), count + n
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def run_sft(cfg: SFTConfig, resume: bool = False,
            on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; the result lands in ``runs/<name>/final``."""
    run = prepare_run(cfg, resume)
    seed_everything(cfg.train.seed)
    train_records, eval_records = load_train_eval(cfg.data, "sft", cfg.train.seed)
    lm, tokenizer = load_policy(cfg.model)
    encode_kw = dict(tokenizer=tokenizer, max_length=cfg.data.max_length,
                     max_prompt_length=cfg.data.max_prompt_length,
                     truncation=cfg.data.truncation, use_chat_template=cfg.data.use_chat_template)
    examples, skipped = encode_dataset(train_records, encode_sft, **encode_kw)
    eval_examples, _ = encode_dataset(eval_records, encode_sft, **encode_kw)
    if skipped.skipped:
        say("sft", f"{skipped.summary()}")
    run.write_manifest(stage="sft", seed=cfg.train.seed, model_source=cfg.model.name,
                       datasets=fingerprints(train=train_records, eval=eval_records),
                       extra={"train_examples": len(examples), "eval_examples": len(eval_examples)})
    algorithm = SFTAlgorithm(examples, eval_examples, tokenizer.pad_token_id,
                             cfg.train.batch_size, cfg.train.seed, cfg.packing,
                             cfg.data.max_length)
    model = CompletionLogprobModel(lm)
    engine = Engine(model, algorithm, cfg.train, run, on_step_end=on_step_end)
    result = engine.train(resume=resume)
    if engine.accelerator.is_main_process:
        save_model(engine.accelerator.unwrap_model(engine.model).lm, tokenizer, run.final)
        plot_training_curves(run.metrics_path, run.figures / "training.png",
                             ("loss", "perplexity"))
    return result
