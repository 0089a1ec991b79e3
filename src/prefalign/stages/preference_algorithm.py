"""The DPO-family step: a batch of pairs through the policy, a preference loss.

Chosen and rejected go through the policy in one forward pass, by default as
one prefix-shared row per pair (``prefalign.data.collate_shared``: the prompt is
computed once), otherwise as ``2B`` concatenated rows; a loss that needs the
policy's log-prob of a reference sample (XPO) gets it from the same pass (a
third segment of the shared row, or ``B`` more rows). Log-probs are summed
over completion tokens (or averaged with ``loss.average_log_prob``), and the
loss is any entry of the registry ``prefalign.losses.preference``. A batch's
reference log-probs come from ``Reference``: precomputed (carried in the
batch), the policy with its adapters disabled, a separate frozen model, or none.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial

import torch

from prefalign.config import LossConfig
from prefalign.data.collate import collate_preference
from prefalign.data.collate_shared import collate_preference_shared, shared_row_length
from prefalign.engine.algorithm import StepOutput
from prefalign.losses.preference import preference_loss, requires_reference_sample
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.common import BatchPlan, to_device
from prefalign.stages.lifecycle import ReferenceModel
from prefalign.stages.reference import ReferenceLogps, pair_logps


@dataclass
class Reference:
    """How a batch gets π_ref log-probs: precomputed, a frozen model, or the policy sans LoRA."""

    kind: str  # "none" | "precomputed" | "adapter_disabled" | "separate"
    model: CompletionLogprobModel | None = None
    train: ReferenceLogps | None = None
    eval: ReferenceLogps | None = None

    def context(self, policy: CompletionLogprobModel):
        if self.kind == "adapter_disabled":
            return _unwrap(policy).reference_context()
        return contextlib.nullcontext()


def batch_reference(reference: ReferenceModel) -> Reference:
    """How a batch gets π_ref from the lifecycle's reference model."""
    if reference.kind == "separate":
        return Reference("separate", model=CompletionLogprobModel(reference.lm))
    return Reference(reference.kind)


def _unwrap(model: torch.nn.Module) -> CompletionLogprobModel:
    return model.module if hasattr(model, "module") else model


def filter_noisy_pairs(examples: list[dict], ref: ReferenceLogps,
                       fraction: float) -> tuple[list[dict], ReferenceLogps]:
    """Drop the ``fraction`` of pairs whose reference margin refc − refr is lowest."""
    if fraction <= 0 or not examples:
        return examples, ref
    margins = ref.chosen - ref.rejected
    drop = int(round(fraction * len(examples)))
    keep = sorted(torch.argsort(margins, stable=True)[drop:].tolist())
    index = torch.tensor(keep, dtype=torch.long)
    return ([examples[i] for i in keep],
            ReferenceLogps(ref.chosen[index], ref.rejected[index], ref.forward_passes,
                           ref.cache_path, ref.from_cache))


def configured_loss(loss: LossConfig, policy_c: torch.Tensor, policy_r: torch.Tensor,
                    ref_c: torch.Tensor | None, ref_r: torch.Tensor | None,
                    chosen_len: torch.Tensor, rejected_len: torch.Tensor,
                    sample: torch.Tensor | None = None, sample_len: torch.Tensor | None = None):
    """The loss ``loss`` asks for on summed log-probs ``[B]`` (``sample``: the policy's
    log-probs of the reference samples, for XPO): with ``average_log_prob`` every
    log-prob, the sample's too, is first divided by its completion length (and the
    lengths become 1). Returns the output and the policy log-probs used (chosen,
    rejected, sample)."""
    if loss.average_log_prob:
        policy_c, policy_r = policy_c / chosen_len, policy_r / rejected_len
        if ref_c is not None:
            ref_c, ref_r = ref_c / chosen_len, ref_r / rejected_len
        if sample is not None:
            sample = sample / sample_len
        chosen_len, rejected_len = torch.ones_like(chosen_len), torch.ones_like(rejected_len)
    out = preference_loss(loss.name, policy_c, policy_r, ref_c, ref_r, chosen_len,
                          rejected_len, sample, **loss.params())
    return out, policy_c, policy_r, sample


class PreferenceAlgorithm:
    """Batches of pairs and the preference-loss step."""

    def __init__(self, examples: list[dict], eval_examples: list[dict], loss: LossConfig,
                 reference: Reference, pad_id: int, batch_size: int, seed: int,
                 prefix_sharing: bool = False):
        self.examples, self.eval_examples = examples, eval_examples
        self.loss, self.reference, self.pad_id = loss, reference, pad_id
        self.batch_size = batch_size
        self.samples = requires_reference_sample(loss.name)
        self.collate = partial(collate_preference_shared if prefix_sharing
                               else collate_preference, samples=self.samples)
        if prefix_sharing:
            lengths = [shared_row_length(e, self.samples) for e in examples]
        else:
            fields = ("chosen_ids", "rejected_ids", "sample_ids")[:3 if self.samples else 2]
            lengths = [len(e["prompt_ids"]) + max(len(e[name]) for name in fields)
                       for e in examples]
        self.plan = BatchPlan(lengths, batch_size, seed, self._collate_train)

    def _collate(self, examples: list[dict], indices: list[int],
                 precomputed: ReferenceLogps | None) -> dict:
        batch = self.collate([examples[i] for i in indices], self.pad_id)
        if precomputed is not None:
            index = torch.tensor(indices, dtype=torch.long)
            batch["ref_chosen"], batch["ref_rejected"] = precomputed.chosen[index], \
                precomputed.rejected[index]
        return batch

    def _collate_train(self, indices: list[int]) -> dict:
        return self._collate(self.examples, indices, self.reference.train)

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> dict:
        return self.plan.batch(epoch, index)

    def _reference_sums(self, model, batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.reference.kind == "none":
            return None
        if "ref_chosen" in batch:
            return batch["ref_chosen"], batch["ref_rejected"]
        ref_model = self.reference.model or model
        with torch.no_grad(), self.reference.context(model):
            sums = pair_logps(ref_model, batch).view(-1, batch["chosen_lengths"].shape[0])
        return sums[0], sums[1]

    def compute(self, model, batch) -> StepOutput:
        batch = to_device(batch, next(model.parameters()).device)
        sums = pair_logps(model, batch).view(-1, batch["chosen_lengths"].shape[0])
        lengths = {name: batch[f"{name}_lengths"].to(sums.dtype)
                   for name in ("chosen", "rejected", "sample") if f"{name}_lengths" in batch}
        ref = self._reference_sums(model, batch)
        ref_c, ref_r = (None, None) if ref is None else (ref[0].to(sums), ref[1].to(sums))
        sample = sums[2] if self.samples else None
        out, policy_c, policy_r, sample = configured_loss(
            self.loss, sums[0], sums[1], ref_c, ref_r, lengths["chosen"], lengths["rejected"],
            sample, lengths.get("sample"))
        metrics = {
            "rewards/chosen": float(out.chosen_rewards.mean()),
            "rewards/rejected": float(out.rejected_rewards.mean()),
            "rewards/accuracy": float((out.chosen_rewards > out.rejected_rewards).float().mean()),
            "rewards/margin": float((out.chosen_rewards - out.rejected_rewards).mean()),
            "logps/chosen": float(policy_c.detach().mean()),
            "logps/rejected": float(policy_r.detach().mean()),
        }
        if sample is not None:
            metrics["xpo/ref_sample_logp"] = float(sample.detach().mean())
        # Tokens of the sequences prompt+completion, whatever the layout.
        tokens = int(sum(batch["prompt_lengths"].sum() + length.sum()
                         for length in lengths.values()))
        return StepOutput(out.loss, metrics, tokens=tokens)

    def step(self, model, batch) -> StepOutput:
        return self.compute(model, batch)

    def evaluate(self, model) -> dict[str, float]:
        if not self.eval_examples:
            return {}
        rows, weights = [], []
        for start in range(0, len(self.eval_examples), self.batch_size):
            indices = list(range(start, min(start + self.batch_size, len(self.eval_examples))))
            batch = self._collate(self.eval_examples, indices, self.reference.eval)
            out = self.compute(model, batch)
            rows.append({"loss": float(out.loss), **out.metrics})
            weights.append(len(indices))
        total = sum(weights)
        return {k: sum(r[k] * w for r, w in zip(rows, weights)) / total for k in rows[0]}
