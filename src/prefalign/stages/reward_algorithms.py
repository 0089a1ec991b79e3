"""Reward-model training algorithms for the engine: pairwise (Bradley-Terry) and regression.

Each algorithm reads its inputs from a *source*: token sequences run through
the whole scalar-head model (LoRA or full fine-tune), or cached last-token
features run through the linear head alone (frozen backbone). The loss is the
same either way:

* pairwise: ``−log σ(r_c − r_r − m) + c·(r_c + r_r)²``
  (``prefalign.losses.reward.bradley_terry_loss``), chosen and rejected in one
  forward pass of ``2B`` rows;
* regression: ``mean((r − (s − μ)/σ)²)`` with the training set's score mean μ
  and std σ (``prefalign.losses.reward.regression_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefalign.data.collate import collate_preference, length_grouped_batches, pad_right
from prefalign.data.collate_shared import collate_preference_shared, shared_row_length
from prefalign.engine.algorithm import StepOutput
from prefalign.eval.rm import pairwise_metrics, pearson
from prefalign.losses.reward import bradley_terry_loss, regression_loss
from prefalign.stages.common import BatchPlan, to_device


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class TokenPairs:
    """Encoded pairs (``prompt_ids``, ``chosen_ids``, ``rejected_ids``, ``margin``?)
    scored by a ``ScalarHeadModel``.

    Two-row layout: rows ``0..B−1`` are ``prompt + chosen``, rows ``B..2B−1``
    ``prompt + rejected``. With ``prefix_sharing``, one row ``[prompt | chosen |
    rejected]`` per pair and a mask that keeps the completions apart
    (``collate_preference_shared``): the rewards are read at the last chosen and
    the last rejected token and equal the two-row rewards, with the prompt
    computed once.
    """

    def __init__(self, examples: Sequence[dict], pad_id: int, prefix_sharing: bool = False):
        self.examples, self.pad_id = list(examples), pad_id
        self.prefix_sharing = prefix_sharing
        self.lengths = [shared_row_length(e) if prefix_sharing else
                        len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))
                        for e in self.examples]

    def collate(self, indices: Sequence[int]) -> dict:
        examples = [self.examples[i] for i in indices]
        if self.prefix_sharing:
            return collate_preference_shared(examples, self.pad_id)
        return collate_preference(examples, self.pad_id)

    def rewards(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        batch = to_device(batch, _device(model))
        if not self.prefix_sharing:
            values = model(batch["input_ids"], batch["attention_mask"])
            half = values.shape[0] // 2
            return values[:half], values[half:], int(batch["attention_mask"].sum())
        last_chosen = batch["prompt_lengths"] + batch["chosen_lengths"] - 1
        last_rejected = last_chosen + batch["rejected_lengths"]
        values = model.values_at(batch["input_ids"], batch["attention_mask"],
                                 torch.stack([last_chosen, last_rejected], dim=1),
                                 batch["position_ids"])
        return values[:, 0], values[:, 1], int((batch["segment_ids"] != 0).sum())


class FeaturePairs:
    """Cached last-token features ``chosen``, ``rejected`` ``[N, H]`` scored by a linear head."""

    def __init__(self, chosen: torch.Tensor, rejected: torch.Tensor,
                 margins: torch.Tensor | None):
        self.chosen, self.rejected, self.margins = chosen, rejected, margins
        self.lengths = [0] * chosen.shape[0]

    def collate(self, indices: Sequence[int]) -> dict:
        index = torch.tensor(list(indices), dtype=torch.long)
        batch = {"chosen": self.chosen[index], "rejected": self.rejected[index]}
        if self.margins is not None:
            batch["margin"] = self.margins[index]
        return batch

    def rewards(self, head, batch: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        device = _device(head)
        features = torch.cat([batch["chosen"], batch["rejected"]]).to(device)
        values = head(features).squeeze(-1)
        half = values.shape[0] // 2
        return values[:half], values[half:], 0


class TokenRated:
    """Encoded rated responses (``input_ids``, ``score``) scored by a ``ScalarHeadModel``."""

    def __init__(self, examples: Sequence[dict], pad_id: int):
        self.examples, self.pad_id = list(examples), pad_id
        self.lengths = [len(e["input_ids"]) for e in self.examples]

    def collate(self, indices: Sequence[int]) -> dict:
        rows = [self.examples[i]["input_ids"] for i in indices]
        return {"input_ids": pad_right(rows, self.pad_id),
                "attention_mask": pad_right([[1] * len(r) for r in rows], 0),
                "score": torch.tensor([self.examples[i]["score"] for i in indices],
                                      dtype=torch.float32)}

    def predict(self, model, batch: dict) -> tuple[torch.Tensor, int]:
        batch = to_device(batch, _device(model))
        mask = batch["attention_mask"]
        return model(batch["input_ids"], mask), int(mask.sum())


class FeatureRated:
    """Cached features ``[N, H]`` and scores ``[N]`` for a linear head."""

    def __init__(self, features: torch.Tensor, scores: torch.Tensor):
        self.features, self.scores = features, scores
        self.lengths = [0] * features.shape[0]

    def collate(self, indices: Sequence[int]) -> dict:
        index = torch.tensor(list(indices), dtype=torch.long)
        return {"features": self.features[index], "score": self.scores[index]}

    def predict(self, head, batch: dict) -> tuple[torch.Tensor, int]:
        return head(batch["features"].to(_device(head))).squeeze(-1), 0


def _eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    return length_grouped_batches(lengths, batch_size, seed=0, shuffle=False)


class PairwiseRewardAlgorithm:
    """Bradley-Terry training on pairs; ``eval_rewards`` keeps the last held-out
    ``(r_c [N], r_r [N])`` in data order."""

    def __init__(self, train, held_out, batch_size: int, seed: int, use_margin: bool,
                 center_coef: float):
        self.train, self.held_out, self.batch_size = train, held_out, batch_size
        self.use_margin, self.center_coef = use_margin, center_coef
        self.plan = BatchPlan(train.lengths, batch_size, seed, train.collate)
        self.eval_rewards: tuple[torch.Tensor, torch.Tensor] | None = None

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> dict:
        return self.plan.batch(epoch, index)

    def _loss(self, chosen, rejected, batch):
        margin = batch.get("margin") if self.use_margin else None
        if margin is not None:
            margin = margin.to(chosen)
        return bradley_terry_loss(chosen, rejected, margin, self.center_coef)

    def step(self, model, batch: dict) -> StepOutput:
        chosen, rejected, tokens = self.train.rewards(model, batch)
        out = self._loss(chosen, rejected, batch)
        scores = torch.cat([chosen, rejected]).detach()
        return StepOutput(out.loss, {
            "accuracy": float(out.accuracy),
            "reward_mean": float(scores.mean()),
            "margin_mean": float((chosen - rejected).detach().mean()),
        }, tokens=tokens)

    def evaluate(self, model) -> dict[str, float]:
        if self.held_out is None or not self.held_out.lengths:
            return {}
        count = len(self.held_out.lengths)
        chosen, rejected = torch.empty(count), torch.empty(count)
        loss_sum = 0.0
        for indices in _eval_batches(self.held_out.lengths, self.batch_size):
            batch = self.held_out.collate(indices)
            r_c, r_r, _ = self.held_out.rewards(model, batch)
            loss_sum += float(self._loss(r_c, r_r, batch).losses.sum())
            chosen[indices], rejected[indices] = r_c.float().cpu(), r_r.float().cpu()
        self.eval_rewards = (chosen, rejected)
        return {**pairwise_metrics(chosen, rejected), "loss": loss_sum / count}


class RegressionRewardAlgorithm:
    """MSE on normalised scores; ``eval_predictions`` keeps the last held-out ``[N]``."""

    def __init__(self, train, held_out, batch_size: int, seed: int, mean: float, std: float):
        self.train, self.held_out, self.batch_size = train, held_out, batch_size
        self.mean, self.std = mean, std
        self.plan = BatchPlan(train.lengths, batch_size, seed, train.collate)
        self.eval_predictions: torch.Tensor | None = None

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> dict:
        return self.plan.batch(epoch, index)

    def step(self, model, batch: dict) -> StepOutput:
        predicted, tokens = self.train.predict(model, batch)
        loss = regression_loss(predicted, batch["score"].to(predicted), self.mean, self.std)
        return StepOutput(loss, {"prediction_mean": float(predicted.detach().mean())},
                          tokens=tokens)

    def evaluate(self, model) -> dict[str, float]:
        if self.held_out is None or not self.held_out.lengths:
            return {}
        count = len(self.held_out.lengths)
        predicted, scores = torch.empty(count), torch.empty(count)
        for indices in _eval_batches(self.held_out.lengths, self.batch_size):
            batch = self.held_out.collate(indices)
            values, _ = self.held_out.predict(model, batch)
            predicted[indices], scores[indices] = values.float().cpu(), batch["score"].float()
        self.eval_predictions = predicted
        target = (scores.double() - self.mean) / self.std
        return {"mse": float(((predicted.double() - target) ** 2).mean()),
                "pearson": pearson(predicted, scores), "responses": count}
