"""KTO: alignment from unpaired desirable / undesirable completions.

Per example ``r = log π(y|x) − log π_ref(y|x)`` (sums over completion tokens);
the KL anchor ``z`` is the batch's mean ``π − π_ref`` on *mismatched* pairs
(each completion scored against the next example's prompt), clamped at 0 and
detached; the loss is ``prefalign.losses.unpaired.kto_loss``. Ethayarajh et
al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
arXiv 2402.01306. The reference (adapters disabled under LoRA, or a frozen
copy) scores each example once before training when ``reference.precompute``
(under the training autocast); the mismatched pairs change with the batch, so
their reference log-probs are computed live.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from prefalign.config import KTOConfig
from prefalign.data.collate import collate_unpaired
from prefalign.data.tokenize import encode_unpaired
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.loop import TrainResult
from prefalign.losses.unpaired import kto_kl_estimate, kto_loss
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.common import BatchPlan, to_device
from prefalign.stages.lifecycle import Lifecycle
from prefalign.stages.preference_algorithm import Reference, batch_reference


def pairs_to_unpaired(pairs: list[dict]) -> list[dict]:
    """Each pair gives a desirable (chosen) and an undesirable (rejected) row."""
    rows = []
    for pair in pairs:
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return rows


def mismatched(examples: list[dict]) -> list[dict]:
    """Completion ``i`` under prompt ``i+1`` (cyclic): pairs the policy never saw together."""
    n = len(examples)
    return [{"prompt_ids": examples[(i + 1) % n]["prompt_ids"],
             "completion_ids": ex["completion_ids"], "label": ex["label"]}
            for i, ex in enumerate(examples)]


def completion_sums(model, batch: dict) -> torch.Tensor:
    logps = model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    return (logps * batch["completion_mask"]).sum(-1)


class KTOAlgorithm:
    """Batches of unpaired examples and the KTO step. An example that carries
    ``ref_logp`` (precomputed) needs no reference pass for its own reward; the
    KL anchor's mismatched pairs change with the batch and are scored live."""

    def __init__(self, examples, eval_examples, cfg: KTOConfig, pad_id: int,
                 reference: Reference):
        self.examples, self.eval_examples = examples, eval_examples
        self.cfg, self.pad_id, self.reference = cfg, pad_id, reference
        lengths = [len(e["prompt_ids"]) + len(e["completion_ids"]) for e in examples]
        self.plan = BatchPlan(lengths, cfg.train.batch_size, cfg.train.seed,
                              lambda idx: [examples[i] for i in idx])

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> list[dict]:
        return self.plan.batch(epoch, index)

    def step(self, model, examples: list[dict]) -> StepOutput:
        device = next(model.parameters()).device
        matched = to_device(collate_unpaired(examples, self.pad_id), device)
        shifted = to_device(collate_unpaired(mismatched(examples), self.pad_id), device)
        policy = completion_sums(model, matched)
        ref_model = self.reference.model or model
        with torch.no_grad():
            policy_kl = completion_sums(model, shifted)
            with self.reference.context(model):
                if all("ref_logp" in e for e in examples):
                    ref = torch.tensor([e["ref_logp"] for e in examples]).to(policy)
                else:
                    ref = completion_sums(ref_model, matched)
                ref_kl = completion_sums(ref_model, shifted)
        kl = kto_kl_estimate(policy_kl, ref_kl)
        out = kto_loss(policy, ref, matched["labels"], kl, **self.cfg.loss.model_dump())
        labels = matched["labels"]
        metrics = {"kl": float(out.kl)}
        if labels.any():
            metrics["rewards/desirable"] = float(out.rewards[labels].mean())
        if (~labels).any():
            metrics["rewards/undesirable"] = float(out.rewards[~labels].mean())
        return StepOutput(out.loss, metrics, tokens=int(matched["attention_mask"].sum()))

    def evaluate(self, model) -> dict[str, float]:
        if len(self.eval_examples) < 2:
            return {}
        rows = []
        size = self.cfg.train.batch_size
        for start in range(0, len(self.eval_examples), size):
            chunk = self.eval_examples[start:start + size]
            if len(chunk) >= 2:
                out = self.step(model, chunk)
                rows.append({"loss": float(out.loss), **out.metrics})
        return {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows)
                for k in {k for r in rows for k in r}}


@torch.no_grad()
def precompute_reference(life: Lifecycle, reference: Reference, policy, examples: list[dict],
                         pad_id: int) -> list[dict]:
    """``examples`` with ``ref_logp`` = log π_ref(y|x), computed once in batches under
    the training autocast."""
    model = reference.model or policy
    device = next(model.parameters()).device
    size, values = life.cfg.train.batch_size, []
    was_training = model.training
    model.eval()
    with reference.context(policy), life.autocast(device):
        for start in range(0, len(examples), size):
            batch = to_device(collate_unpaired(examples[start:start + size], pad_id), device)
            values.extend(completion_sums(model, batch).float().cpu().tolist())
    model.train(was_training)
    return [{**example, "ref_logp": value} for example, value in zip(examples, values)]


def run_kto(cfg: KTOConfig, resume: bool = False,
            on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train with KTO; the result lands in ``runs/<name>/final``."""
    life = Lifecycle(cfg, "kto", resume, on_step_end)
    life.setup()
    records, held_out = life.load_data("preference" if cfg.from_pairs else "unpaired")
    if cfg.from_pairs:
        records, held_out = pairs_to_unpaired(records), pairs_to_unpaired(held_out)
    models = life.load_models(needs_reference=True)
    pad_id = models.tokenizer.pad_token_id
    examples = life.encode(records, encode_unpaired, models.tokenizer)
    eval_examples = life.encode(held_out, encode_unpaired, models.tokenizer, label="eval")
    policy = CompletionLogprobModel(models.policy)
    reference = batch_reference(models.reference)
    if cfg.reference.precompute:
        examples = precompute_reference(life, reference, policy, examples, pad_id)
        eval_examples = precompute_reference(life, reference, policy, eval_examples, pad_id)
    life.write_manifest({"train": records, "eval": held_out}, train_examples=len(examples),
                        eval_examples=len(eval_examples), reference=reference.kind)
    algorithm = KTOAlgorithm(examples, eval_examples, cfg, pad_id, reference)
    result = life.train(policy, algorithm)
    lm = life.trained().lm
    return life.finish(result, save=lambda: save_model(lm, models.tokenizer, life.run.final),
                       figures=("loss", "kl"))
