"""KTO: alignment from unpaired desirable / undesirable completions.

Per example ``r = log π(y|x) − log π_ref(y|x)`` (sums over completion tokens);
the KL anchor ``z`` is the batch's mean ``π − π_ref`` on *mismatched* pairs
(each completion scored against the next example's prompt), clamped at 0 and
detached; the loss is ``prefalign.losses.unpaired.kto_loss``. Ethayarajh et
al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
arXiv 2402.01306. The mismatched pairs change with the batch, so reference
log-probs are computed live (adapters disabled under LoRA, or a frozen copy).
"""

from __future__ import annotations

import contextlib

import torch

from prefalign.config import KTOConfig
from prefalign.data.collate import collate_unpaired
from prefalign.data.split import split_records
from prefalign.data.tokenize import encode_dataset, encode_unpaired
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.loop import Engine, TrainResult, seed_everything
from prefalign.log import say
from prefalign.losses.unpaired import kto_kl_estimate, kto_loss
from prefalign.models.load import load_model
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.report.curves import plot_training_curves
from prefalign.stages.common import BatchPlan, fingerprints, load_policy, prepare_run, to_device
from prefalign.tasks import load_source


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
    def __init__(self, examples, eval_examples, cfg: KTOConfig, pad_id: int,
                 reference_model: CompletionLogprobModel | None):
        self.examples, self.eval_examples = examples, eval_examples
        self.cfg, self.pad_id, self.reference_model = cfg, pad_id, reference_model
        lengths = [len(e["prompt_ids"]) + len(e["completion_ids"]) for e in examples]
        self.plan = BatchPlan(lengths, cfg.train.batch_size, cfg.train.seed,
                              lambda idx: [examples[i] for i in idx])

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch)

    def batch(self, epoch: int, index: int) -> list[dict]:
        return self.plan.batch(epoch, index)

    def _reference(self, model):
        if self.reference_model is not None:
            return self.reference_model, contextlib.nullcontext()
        inner = model.module if hasattr(model, "module") else model
        return model, inner.reference_context()

    def step(self, model, examples: list[dict]) -> StepOutput:
        device = next(model.parameters()).device
        matched = to_device(collate_unpaired(examples, self.pad_id), device)
        shifted = to_device(collate_unpaired(mismatched(examples), self.pad_id), device)
        policy = completion_sums(model, matched)
        ref_model, ref_context = self._reference(model)
        with torch.no_grad():
            policy_kl = completion_sums(model, shifted)
            with ref_context:
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


def run_kto(cfg: KTOConfig, resume: bool = False) -> TrainResult:
    """Train with KTO; the result lands in ``runs/<name>/final``."""
    run = prepare_run(cfg, resume)
    seed_everything(cfg.train.seed)
    kind = "preference" if cfg.from_pairs else "unpaired"
    records = load_source(cfg.data.train, kind)
    held_out = load_source(cfg.data.eval, kind) if cfg.data.eval else []
    if not cfg.data.eval and cfg.data.eval_fraction > 0:
        parts = split_records(records, {"train": 1 - cfg.data.eval_fraction,
                                        "eval": cfg.data.eval_fraction}, cfg.train.seed)
        records, held_out = parts["train"], parts["eval"]
    if cfg.from_pairs:
        records, held_out = pairs_to_unpaired(records), pairs_to_unpaired(held_out)
    lm, tokenizer = load_policy(cfg.model)
    encode_kw = dict(tokenizer=tokenizer, max_length=cfg.data.max_length,
                     max_prompt_length=cfg.data.max_prompt_length,
                     truncation=cfg.data.truncation, use_chat_template=cfg.data.use_chat_template)
    examples, skipped = encode_dataset(records, encode_unpaired, **encode_kw)
    eval_examples, _ = encode_dataset(held_out, encode_unpaired, **encode_kw)
    if skipped.skipped:
        say("kto", skipped.summary())
    reference_model = None
    if cfg.model.lora is None or cfg.reference.source == "separate":
        ref_lm, _ = load_model(cfg.reference.model or cfg.model.name, dtype=cfg.model.dtype)
        reference_model = CompletionLogprobModel(ref_lm.requires_grad_(False).eval())
    run.write_manifest(stage="kto", seed=cfg.train.seed, model_source=cfg.model.name,
                       datasets=fingerprints(train=records, eval=held_out))
    algorithm = KTOAlgorithm(examples, eval_examples, cfg, tokenizer.pad_token_id,
                             reference_model)
    engine = Engine(CompletionLogprobModel(lm), algorithm, cfg.train, run)
    result = engine.train(resume=resume)
    if engine.accelerator.is_main_process:
        save_model(engine.accelerator.unwrap_model(engine.model).lm, tokenizer, run.final)
        plot_training_curves(run.metrics_path, run.figures / "training.png", ("loss", "kl"))
    return result
