"""Supervised fine-tuning: next-token loss on completion tokens only.

``L = −(1/N) Σ_t log p(y_t | x, y_<t)`` over the N completion tokens of a
micro-batch (prompt tokens are context, never targets). Optional packing puts
several examples in one row with restarted position ids and a block-diagonal
mask, so no compute goes to padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from prefalign.config import SFTConfig
from prefalign.data.collate import collate_packed, collate_sft, pack_sft
from prefalign.data.tokenize import encode_sft
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.loop import TrainResult
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.common import BatchPlan, to_device
from prefalign.stages.lifecycle import Lifecycle


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


def chosen_as_sft(pairs: list[dict]) -> list[dict]:
    """The chosen reply of each preference pair as an SFT example."""
    return [{"prompt": pair["prompt"], "completion": pair["chosen"]} for pair in pairs]


def run_sft(cfg: SFTConfig, resume: bool = False,
            on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; the result lands in ``runs/<name>/final``."""
    life = Lifecycle(cfg, "sft", resume, on_step_end)
    life.setup()
    train_records, eval_records = life.load_data("preference" if cfg.from_pairs else "sft")
    if cfg.from_pairs:
        train_records, eval_records = chosen_as_sft(train_records), chosen_as_sft(eval_records)
    models = life.load_models()
    examples = life.encode(train_records, encode_sft, models.tokenizer)
    eval_examples = life.encode(eval_records, encode_sft, models.tokenizer, label="eval")
    life.write_manifest({"train": train_records, "eval": eval_records},
                        train_examples=len(examples), eval_examples=len(eval_examples))
    algorithm = SFTAlgorithm(examples, eval_examples, models.tokenizer.pad_token_id,
                             cfg.train.batch_size, cfg.train.seed, cfg.packing,
                             cfg.data.max_length)
    result = life.train(CompletionLogprobModel(models.policy), algorithm)
    policy = life.trained().lm
    return life.finish(result, save=lambda: save_model(policy, models.tokenizer, life.run.final),
                       figures=("loss", "perplexity"))
