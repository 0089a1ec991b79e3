"""Step reward training for the engine: process (every step) or outcome (final answer).

Sources, as for the other reward models: ``TokenSteps`` runs whole solutions
through the scalar-head model (LoRA or full fine-tune) and reads its head at
each step boundary, one forward pass per solution; ``FeatureSteps`` holds the
frozen backbone's boundary features, computed once, for the linear head alone.
The loss is ``prefalign.losses.process.step_bce_loss`` on the objective's
targets (``step_targets``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefalign.data.collate import length_grouped_batches, pad_right
from prefalign.engine.algorithm import StepOutput
from prefalign.losses.process import step_bce_loss, step_targets
from prefalign.stages.common import BatchPlan, to_device


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _labels(examples: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Padded ``labels [B, K]``, ``step_mask [B, K]`` and ``final_correct [B]``."""
    return {"labels": pad_right([e["labels"] for e in examples], 0),
            "step_mask": pad_right([[1] * len(e["labels"]) for e in examples], 0),
            "final_correct": torch.tensor([float(e["final_correct"]) for e in examples])}


class TokenSteps:
    """Encoded solutions (``input_ids``, ``boundaries``, ``labels``, ``final_correct``)
    scored by a ``ScalarHeadModel`` at their step boundaries."""

    def __init__(self, examples: Sequence[dict], pad_id: int):
        self.examples, self.pad_id = list(examples), pad_id
        self.lengths = [len(e["input_ids"]) for e in self.examples]

    def collate(self, indices: Sequence[int]) -> dict:
        examples = [self.examples[i] for i in indices]
        rows = [e["input_ids"] for e in examples]
        return {"input_ids": pad_right(rows, self.pad_id),
                "attention_mask": pad_right([[1] * len(r) for r in rows], 0),
                "boundaries": pad_right([e["boundaries"] for e in examples], 0),
                **_labels(examples)}

    def logits(self, model, batch: dict) -> tuple[torch.Tensor, int]:
        batch = to_device(batch, _device(model))
        values = model.values_at(batch["input_ids"], batch["attention_mask"],
                                 batch["boundaries"])
        return values, int(batch["attention_mask"].sum())


class FeatureSteps:
    """Frozen-backbone boundary features ``[K_i, H]`` per solution, for a linear head."""

    def __init__(self, features: Sequence[torch.Tensor], examples: Sequence[dict]):
        self.features, self.examples = list(features), list(examples)
        self.lengths = [f.shape[0] for f in self.features]

    def collate(self, indices: Sequence[int]) -> dict:
        parts = [self.features[i] for i in indices]
        padded = torch.zeros(len(parts), max(p.shape[0] for p in parts), parts[0].shape[1])
        for row, part in enumerate(parts):
            padded[row, :part.shape[0]] = part
        return {"features": padded, **_labels([self.examples[i] for i in indices])}

    def logits(self, head, batch: dict) -> tuple[torch.Tensor, int]:
        return head(batch["features"].to(_device(head))).squeeze(-1), 0


class StepRewardAlgorithm:
    """Per-step BCE (process) or last-step BCE on the answer (outcome); ``eval_probabilities``
    keeps the last held-out per-step probabilities, one ``[K_i]`` tensor per solution."""

    def __init__(self, train, held_out, batch_size: int, seed: int, objective: str):
        self.train, self.held_out, self.batch_size = train, held_out, batch_size
        self.objective = objective
        self.plan = BatchPlan(train.lengths, batch_size, seed, train.collate)
        self.eval_probabilities: list[torch.Tensor] | None = None

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> dict:
        return self.plan.batch(epoch, index)

    def _loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        targets, supervised = step_targets(batch["labels"].to(logits.device),
                                           batch["final_correct"].to(logits.device),
                                           batch["step_mask"].to(logits.device), self.objective)
        return step_bce_loss(logits, targets, supervised)

    def step(self, model, batch: dict) -> StepOutput:
        logits, tokens = self.train.logits(model, batch)
        loss = self._loss(logits, batch)
        mask = batch["step_mask"].to(logits.device).bool()
        correct = ((logits.detach() > 0).long() == batch["labels"].to(logits.device)) & mask
        return StepOutput(loss, {"step_accuracy": float(correct.sum() / mask.sum())},
                          tokens=tokens)

    def evaluate(self, model) -> dict[str, float]:
        if self.held_out is None or not self.held_out.lengths:
            return {}
        probabilities: list[torch.Tensor | None] = [None] * len(self.held_out.lengths)
        loss_sum, batches = 0.0, 0
        with torch.no_grad():
            for indices in length_grouped_batches(self.held_out.lengths, self.batch_size,
                                                  seed=0, shuffle=False):
                batch = self.held_out.collate(indices)
                logits, _ = self.held_out.logits(model, batch)
                loss_sum += float(self._loss(logits, batch))
                batches += 1
                for row, index in enumerate(indices):
                    steps = int(batch["step_mask"][row].sum())
                    probabilities[index] = torch.sigmoid(logits[row, :steps].float()).cpu()
        self.eval_probabilities = probabilities  # type: ignore[assignment]
        labels = torch.cat([torch.tensor(e["labels"]) for e in self.held_out.examples])
        predicted = torch.cat(probabilities) > 0.5  # type: ignore[arg-type]
        return {"loss": loss_sum / batches,
                "step_accuracy": float((predicted.long() == labels).float().mean()),
                "solutions": len(probabilities)}
