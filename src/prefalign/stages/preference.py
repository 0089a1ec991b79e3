"""Offline preference optimisation: the DPO family on {prompt, chosen, rejected}.

Chosen and rejected go through the policy in one forward pass, by default as
one prefix-shared row per pair (``prefix_sharing``: the prompt is computed once,
``prefalign.data.collate_shared``), otherwise as ``2B`` concatenated rows;
log-probs are summed over completion tokens only (or averaged with
``loss.average_log_prob``). The loss is any entry of
``prefalign.losses.preference``. The reference is the policy with its LoRA
adapters disabled, a separate frozen model, or nothing for reference-free
losses; by default its log-probs are computed once and cached on disk
(``stages/reference.py``). A config may list phases, run in order from the
previous phase's weights, each with its own epochs, loss settings and
noisy-pair filter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from prefalign.config import LossConfig, PreferenceConfig, TrainConfig
from prefalign.data.collate import collate_preference
from prefalign.data.collate_shared import collate_preference_shared, shared_row_length
from prefalign.data.tokenize import encode_dataset, encode_preference
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.distributed import is_main_process
from prefalign.log import say
from prefalign.engine.loop import Engine, TrainResult, seed_everything
from prefalign.engine.metrics import MetricsLogger
from prefalign.engine.rundir import RunDir, atomic_write_json
from prefalign.errors import ConfigError
from prefalign.eval.verifier import pass_rate
from prefalign.losses.preference import PREFERENCE_LOSSES, preference_loss, requires_reference
from prefalign.models.load import load_model
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import CompletionLogprobModel, supports_mask_4d
from prefalign.report.curves import plot_training_curves
from prefalign.stages.common import (BatchPlan, fingerprints, load_policy, load_train_eval,
                                     prepare_run, to_device)
from prefalign.stages.reference import ReferenceLogps, pair_logps, reference_logps


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


class PreferenceAlgorithm:
    """Batches of pairs and the preference-loss step."""

    def __init__(self, examples: list[dict], eval_examples: list[dict], loss: LossConfig,
                 reference: Reference, pad_id: int, batch_size: int, seed: int,
                 prefix_sharing: bool = False):
        self.examples, self.eval_examples = examples, eval_examples
        self.loss, self.reference, self.pad_id = loss, reference, pad_id
        self.batch_size = batch_size
        self.collate = collate_preference_shared if prefix_sharing else collate_preference
        if prefix_sharing:
            lengths = [shared_row_length(e) for e in examples]
        else:
            lengths = [len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))
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
            sums = pair_logps(ref_model, batch)
        half = sums.shape[0] // 2
        return sums[:half], sums[half:]

    def compute(self, model, batch) -> StepOutput:
        batch = to_device(batch, next(model.parameters()).device)
        sums = pair_logps(model, batch)
        half = sums.shape[0] // 2
        chosen_len = batch["chosen_lengths"].to(sums.dtype)
        rejected_len = batch["rejected_lengths"].to(sums.dtype)
        policy_c, policy_r = sums[:half], sums[half:]
        ref = self._reference_sums(model, batch)
        ref_c, ref_r = (None, None) if ref is None else (ref[0].to(sums), ref[1].to(sums))
        if self.loss.average_log_prob:
            policy_c, policy_r = policy_c / chosen_len, policy_r / rejected_len
            if ref is not None:
                ref_c, ref_r = ref_c / chosen_len, ref_r / rejected_len
            chosen_len, rejected_len = torch.ones_like(chosen_len), torch.ones_like(rejected_len)
        out = preference_loss(self.loss.name, policy_c, policy_r, ref_c, ref_r,
                              chosen_len, rejected_len, **self.loss.params())
        metrics = {
            "rewards/chosen": float(out.chosen_rewards.mean()),
            "rewards/rejected": float(out.rejected_rewards.mean()),
            "rewards/accuracy": float((out.chosen_rewards > out.rejected_rewards).float().mean()),
            "rewards/margin": float((out.chosen_rewards - out.rejected_rewards).mean()),
            "logps/chosen": float(policy_c.detach().mean()),
            "logps/rejected": float(policy_r.detach().mean()),
        }
        # Tokens of the two sequences prompt+chosen and prompt+rejected, whatever the layout.
        tokens = int(2 * batch["prompt_lengths"].sum() + batch["chosen_lengths"].sum()
                     + batch["rejected_lengths"].sum())
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


def phase_losses(cfg: PreferenceConfig) -> list[LossConfig]:
    """The loss config of each phase (top-level loss updated by the phase's settings)."""
    losses = []
    for phase in cfg.phases or [None]:
        update = phase.loss if phase is not None else {}
        try:
            loss = LossConfig.model_validate({**cfg.loss.model_dump(exclude_none=True), **update})
        except Exception as exc:  # pydantic ValidationError → one clear line
            raise ConfigError(f"phase loss settings {update}: {exc.errors()[0]['msg']}") from None
        if loss.name not in PREFERENCE_LOSSES:
            raise ConfigError(f"unknown loss '{loss.name}'; valid: "
                              f"{', '.join(sorted(PREFERENCE_LOSSES))}")
        losses.append(loss)
    return losses


def _build_reference(cfg: PreferenceConfig, policy: CompletionLogprobModel,
                     needs_reference: bool) -> Reference:
    if not needs_reference:
        return Reference("none")
    source = cfg.reference.source
    if source == "auto":
        source = "adapter_disabled" if cfg.model.lora is not None else "separate"
    if source == "adapter_disabled":
        if cfg.model.lora is None:
            raise ConfigError("reference.source=adapter_disabled needs model.lora "
                              "(a full fine-tune has no adapters to disable)")
        return Reference("adapter_disabled")
    ref_lm, _ = load_model(cfg.reference.model or cfg.model.name, dtype=cfg.model.dtype)
    ref_lm.requires_grad_(False).eval()
    return Reference("separate", model=CompletionLogprobModel(ref_lm))


def _precompute(reference: Reference, policy: CompletionLogprobModel, examples, eval_examples,
                pad_id: int, batch_size: int, use_cache: bool,
                prefix_sharing: bool = True) -> Reference:
    model = reference.model or policy
    with reference.context(policy):
        train = reference_logps(model, examples, pad_id, batch_size, use_cache, prefix_sharing)
        held_out = reference_logps(model, eval_examples, pad_id, batch_size, use_cache,
                                   prefix_sharing)
    return Reference("precomputed", train=train, eval=held_out)


def run_preference(cfg: PreferenceConfig, resume: bool = False,
                   on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a policy with a DPO-family loss; the result lands in ``runs/<name>/final``."""
    losses = phase_losses(cfg)
    needs_reference = any(requires_reference(l.name) for l in losses) or \
        cfg.filter_noisy > 0 or any(p.filter_noisy > 0 for p in cfg.phases)
    run = prepare_run(cfg, resume, allow_phases=bool(cfg.phases))
    seed_everything(cfg.train.seed)
    train_records, eval_records = load_train_eval(cfg.data, "preference", cfg.train.seed)
    lm, tokenizer = load_policy(cfg.model)
    encode_kw = dict(tokenizer=tokenizer, max_length=cfg.data.max_length,
                     max_prompt_length=cfg.data.max_prompt_length,
                     truncation=cfg.data.truncation, use_chat_template=cfg.data.use_chat_template)
    examples, skipped = encode_dataset(train_records, encode_preference, **encode_kw)
    eval_examples, eval_skipped = encode_dataset(eval_records, encode_preference, **encode_kw)
    for label, report in (("train", skipped), ("eval", eval_skipped)):
        if report.skipped:
            say("dpo", f"{label}: {report.summary()}")
    policy = CompletionLogprobModel(lm)
    reference = _build_reference(cfg, policy, needs_reference)
    sharing = cfg.prefix_sharing and all(supports_mask_4d(m) for m in (policy, reference.model)
                                         if m is not None)
    if cfg.prefix_sharing and not sharing:
        say("dpo", "prefix sharing off: the model's attention implementation takes no custom "
                   "mask (needs sdpa or eager)")
    if reference.kind != "none" and cfg.reference.precompute:
        say("dpo", f"reference log-probs for {len(examples) + len(eval_examples)} pairs "
                   f"({reference.kind} reference)")
        reference = _precompute(reference, policy, examples, eval_examples,
                                tokenizer.pad_token_id, cfg.train.batch_size, use_cache=True,
                                prefix_sharing=sharing)
        passes = reference.train.forward_passes + reference.eval.forward_passes
        say("dpo", f"reference log-probs: {passes} forward passes "
              f"({'from cache' if passes == 0 else 'computed and cached'}: "
              f"{reference.train.cache_path})")
        MetricsLogger(run.metrics_path).log(0, {"reference/forward_passes": passes})
    run.write_manifest(stage="dpo", seed=cfg.train.seed, model_source=cfg.model.name,
                       datasets=fingerprints(train=train_records, eval=eval_records),
                       extra={"train_pairs": len(examples), "eval_pairs": len(eval_examples),
                              "skipped": skipped.counts, "reference": reference.kind})
    verify_records = eval_records[: cfg.verify_samples]
    verification = {}
    if cfg.verify != "none":
        say("dpo", f"verifier '{cfg.verify}': greedy generation on {len(verify_records)} "
                   f"held-out prompts (before training)")
        verification["before"] = pass_rate(lm, tokenizer, verify_records, cfg.verify,
                                           use_chat_template=cfg.data.use_chat_template)
        say("dpo", f"verifier pass rate before: {verification['before']['pass_rate']:.3f}")
    result = TrainResult(step=0)
    phases = cfg.phases or [None]
    for number, (phase, loss) in enumerate(zip(phases, losses)):
        phase_run = run if phase is None else RunDir(run.root / f"phase-{number}").create()
        if phase is not None and (phase_run.root / "done.json").exists():
            continue
        train_cfg = cfg.train if phase is None else TrainConfig.model_validate(
            {**cfg.train.model_dump(), "epochs": phase.epochs,
             "lr": phase.lr or cfg.train.lr, "max_steps": None})
        fraction = cfg.filter_noisy if phase is None else phase.filter_noisy
        phase_examples, phase_ref = examples, reference
        if fraction > 0:
            phase_examples, kept_ref = filter_noisy_pairs(examples, reference.train, fraction)
            phase_ref = Reference("precomputed", train=kept_ref, eval=reference.eval)
            say("dpo", f"phase {number}: dropped {len(examples) - len(phase_examples)} "
                  f"noisiest pairs of {len(examples)}")
        algorithm = PreferenceAlgorithm(phase_examples, eval_examples, loss, phase_ref,
                                        tokenizer.pad_token_id, train_cfg.batch_size,
                                        train_cfg.seed + number, prefix_sharing=sharing)
        engine = Engine(policy, algorithm, train_cfg, phase_run, on_step_end=on_step_end)
        result = engine.train(resume=resume and bool(list(phase_run.checkpoints.glob("step-*"))))
        policy = engine.accelerator.unwrap_model(engine.model)
        if phase is not None:
            atomic_write_json(phase_run.root / "done.json", {"step": result.step,
                                                             "eval": result.eval_metrics})
    if cfg.verify != "none":
        verification["after"] = pass_rate(policy.lm, tokenizer, verify_records, cfg.verify,
                                          use_chat_template=cfg.data.use_chat_template)
        say("dpo", f"verifier pass rate after: {verification['after']['pass_rate']:.3f}")
        atomic_write_json(run.root / "verify.json", verification)
        result.eval_metrics.update({"verify/before": verification["before"]["pass_rate"],
                                    "verify/after": verification["after"]["pass_rate"]})
    if is_main_process():  # one writer under several processes
        save_model(policy.lm, tokenizer, run.final)
    atomic_write_json(run.root / "eval.json", result.eval_metrics)
    plot_training_curves(run.metrics_path, run.figures / "training.png",
                         ("loss", "rewards/accuracy", "rewards/margin"))
    return result



def filter_noisy_file(source: str, destination: str, model: str, fraction: float, *,
                      max_length: int = 512, max_prompt_length: int = 384,
                      use_chat_template: bool = True, batch_size: int = 8) -> dict:
    """Write the pairs of ``source`` minus the ``fraction`` with the lowest reference margin.

    The margin ``log π_ref(chosen|x) − log π_ref(rejected|x)`` under ``model``
    measures how strongly the reference disagrees with the label; the pairs it
    disagrees with most are the likeliest to be mislabelled. Log-probs come
    from (and go to) the reference cache.
    """
    from prefalign.data.load import write_jsonl
    from prefalign.data.sources import load_source

    if not 0 <= fraction < 1:
        raise ConfigError(f"fraction must be in [0, 1), got {fraction}")
    records = load_source(source, "preference")
    lm, tokenizer = load_model(model)
    examples, skipped = encode_dataset(records, encode_preference, tokenizer=tokenizer,
                                       max_length=max_length,
                                       max_prompt_length=max_prompt_length,
                                       use_chat_template=use_chat_template)
    ref = reference_logps(CompletionLogprobModel(lm), examples, tokenizer.pad_token_id,
                          batch_size)
    kept, _ = filter_noisy_pairs(examples, ref, fraction)
    write_jsonl([records[e["index"]] for e in kept], destination)
    return {"read": len(records), "encoded": len(examples), "kept": len(kept),
            "dropped": len(examples) - len(kept), "skipped": skipped.counts}
