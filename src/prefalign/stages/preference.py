"""Offline preference optimisation: the DPO family on {prompt, chosen, rejected}.

The run follows the stage lifecycle (``lifecycle.py``); what is particular to
it: the pair encoding, the reference log-probs (by default computed once, under
the training autocast, and cached on disk: ``reference.py``), optional
noisy-pair filtering by reference margin, optional phases (run in order from the
previous phase's weights, each with its own epochs, loss settings and filter),
and an optional verifier pass rate before and after training. A loss that
needs a reply sampled from the reference model (XPO) reads it from each
record's ``reference_sample`` and refuses a record without one (make them with
``prefalign data reference-samples``: ``stages.sampling.add_reference_samples``). The step is
``preference_algorithm.PreferenceAlgorithm``.
"""

from __future__ import annotations

from collections.abc import Callable

from prefalign.config import PreferenceConfig, TrainConfig
from prefalign.data.schema import REFERENCE_SAMPLE, Required
from prefalign.data.tokenize import encode_preference
from prefalign.engine.loop import TrainResult
from prefalign.engine.metrics import MetricsLogger
from prefalign.engine.rundir import RunDir, atomic_write_json
from prefalign.errors import ConfigError
from prefalign.eval.verifier import pass_rate
from prefalign.losses.preference import requires_reference, requires_reference_sample
from prefalign.models.save import save_model
from prefalign.models.token_logprobs import CompletionLogprobModel, supports_mask_4d
from prefalign.stages.lifecycle import Lifecycle
from prefalign.stages.preference_algorithm import (
    PreferenceAlgorithm,
    Reference,
    batch_reference,
    filter_noisy_pairs,
)
from prefalign.stages.reference import reference_logps
from prefalign.tasks import get_task, task_names

__all__ = ["PreferenceAlgorithm", "Reference", "check_config", "filter_noisy_pairs",
           "run_preference"]


def _filters(cfg: PreferenceConfig) -> list[float]:
    return [phase.filter_noisy for phase in cfg.phases] or [cfg.filter_noisy]


def check_config(cfg: PreferenceConfig) -> None:
    """Refuse settings that contradict each other, before anything is loaded."""
    if any(fraction > 0 for fraction in _filters(cfg)) and not cfg.reference.precompute:
        raise ConfigError("filter_noisy ranks pairs by their reference margin, computed "
                          "before training: it needs reference.precompute=true")
    if cfg.verify != "none":
        verifier_fields(cfg.verify)


def sample_requirement(cfg: PreferenceConfig) -> Required | None:
    """``{"reference_sample": why}`` when a loss of the run needs reference samples."""
    names = [loss.name for loss in cfg.phase_losses() if requires_reference_sample(loss.name)]
    if not names:
        return None
    return {REFERENCE_SAMPLE: f"loss {names[0]} needs a reply sampled from the reference "
                              f"model for the prompt; add them with `prefalign data "
                              f"reference-samples`"}


def verifier_fields(name: str) -> tuple[str, ...]:
    """The record fields that task ``name``'s verifier reads; a ``ConfigError`` when no
    task of that name has a verifier."""
    try:
        task = get_task(name)
    except ConfigError as error:
        raise ConfigError(f"verify: {error}") from None
    if task.verifier is None:
        with_one = [n for n in task_names() if get_task(n).verifier is not None]
        raise ConfigError(f"verify: task '{name}' has no verifier; tasks with one: "
                          f"{', '.join(with_one)}")
    return task.verifier().required_fields


def verify_records(cfg: PreferenceConfig, records: list[dict]) -> list[dict]:
    """The first ``verify_samples`` held-out records as the verifier sees them: a pair's
    ``metadata`` fields (where a preference record keeps the answer, the numbers...) next
    to its own; a ``ConfigError`` when one lacks a field the verifier reads."""
    records = [{**(r.get("metadata") or {}), **r} for r in records[: cfg.verify_samples]]
    fields = verifier_fields(cfg.verify)
    for index, record in enumerate(records):
        missing = [f for f in fields if f not in record]
        if missing:
            raise ConfigError(f"verify={cfg.verify}: held-out record {index} has no "
                              f"'{missing[0]}' field, which the verifier reads; use held-out "
                              f"data of that task (e.g. builtin:{cfg.verify})")
    return records


def precompute(life: Lifecycle, reference: Reference, policy: CompletionLogprobModel,
               examples: list[dict], eval_examples: list[dict], pad_id: int,
               sharing: bool) -> Reference:
    """π_ref log-probs of every pair, once, under the training autocast, via the cache."""
    life.say(f"reference log-probs for {len(examples) + len(eval_examples)} pairs "
             f"({reference.kind} reference)")
    model = reference.model or policy
    batch_size = life.cfg.train.batch_size
    with reference.context(policy), life.autocast(next(model.parameters()).device):
        train = reference_logps(model, examples, pad_id, batch_size, True, sharing)
        held_out = reference_logps(model, eval_examples, pad_id, batch_size, True, sharing)
    passes = train.forward_passes + held_out.forward_passes
    life.say(f"reference log-probs: {passes} forward passes "
             f"({'from cache' if passes == 0 else 'computed and cached'}: {train.cache_path})")
    MetricsLogger(life.run.metrics_path).log(0, {"reference/forward_passes": passes})
    return Reference("precomputed", train=train, eval=held_out)


def _verify(cfg: PreferenceConfig, lm, tokenizer, records: list[dict]) -> dict:
    return pass_rate(lm, tokenizer, records, cfg.verify,
                     use_chat_template=cfg.data.use_chat_template)


def _phase_train_config(cfg: PreferenceConfig, phase) -> TrainConfig:
    if phase is None:
        return cfg.train
    return TrainConfig.model_validate({**cfg.train.model_dump(), "epochs": phase.epochs,
                                       "lr": phase.lr or cfg.train.lr, "max_steps": None})


def run_phases(life: Lifecycle, policy: CompletionLogprobModel, examples: list[dict],
               eval_examples: list[dict], reference: Reference, pad_id: int,
               sharing: bool) -> tuple[CompletionLogprobModel, TrainResult]:
    """Train each phase (or the single run) from the previous weights."""
    cfg, result = life.cfg, TrainResult(step=0)
    phases = cfg.phases or [None]
    for number, (phase, loss) in enumerate(zip(phases, cfg.phase_losses())):
        phase_run = life.run if phase is None else RunDir(life.run.root / f"phase-{number}")
        phase_run.create()
        if phase is not None and (phase_run.root / "done.json").exists():
            continue
        fraction = _filters(cfg)[number]
        phase_examples, phase_ref = examples, reference
        if fraction > 0:
            phase_examples, kept = filter_noisy_pairs(examples, reference.train, fraction)
            phase_ref = Reference("precomputed", train=kept, eval=reference.eval)
            life.say(f"phase {number}: dropped {len(examples) - len(phase_examples)} "
                     f"noisiest pairs of {len(examples)}")
        train_cfg = _phase_train_config(cfg, phase)
        algorithm = PreferenceAlgorithm(phase_examples, eval_examples, loss, phase_ref, pad_id,
                                        train_cfg.batch_size, train_cfg.seed + number,
                                        prefix_sharing=sharing)
        resume = life.resume and bool(list(phase_run.checkpoints.glob("step-*")))
        result = life.train(policy, algorithm, train_cfg, phase_run, resume=resume)
        policy = life.trained()
        if phase is not None:
            done = {"step": result.step, "eval": result.eval_metrics}
            life.on_main(lambda path=phase_run.root / "done.json", done=done:
                         atomic_write_json(path, done))
    return policy, result


def run_preference(cfg: PreferenceConfig, resume: bool = False,
                   on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a policy with a DPO-family loss; the result lands in ``runs/<name>/final``."""
    check_config(cfg)
    needs_reference = any(requires_reference(loss.name) for loss in cfg.phase_losses()) \
        or any(fraction > 0 for fraction in _filters(cfg))
    life = Lifecycle(cfg, "dpo", resume, on_step_end)
    life.setup(allow_phases=bool(cfg.phases))
    require = sample_requirement(cfg)
    train_records, eval_records = life.load_data("preference", require)
    checked = verify_records(cfg, eval_records) if cfg.verify != "none" else []
    models = life.load_models(needs_reference)
    tokenizer, pad_id = models.tokenizer, models.tokenizer.pad_token_id
    samples = require is not None
    examples = life.encode(train_records, encode_preference, tokenizer,
                           reference_sample=samples)
    eval_examples = life.encode(eval_records, encode_preference, tokenizer, label="eval",
                                reference_sample=samples)
    policy = CompletionLogprobModel(models.policy)
    reference = batch_reference(models.reference)
    sharing = cfg.prefix_sharing and all(supports_mask_4d(m) for m in (policy, reference.model)
                                         if m is not None)
    if cfg.prefix_sharing and not sharing:
        life.say("prefix sharing off: the model's attention implementation takes no custom "
                 "mask (needs sdpa or eager)")
    if reference.kind != "none" and cfg.reference.precompute:
        reference = precompute(life, reference, policy, examples, eval_examples, pad_id,
                               sharing)
    life.write_manifest({"train": train_records, "eval": eval_records},
                        train_pairs=len(examples), eval_pairs=len(eval_examples),
                        skipped=life.skipped.get("train", {}), reference=reference.kind)
    verification = {}
    if cfg.verify != "none":
        life.say(f"verifier '{cfg.verify}': greedy generation on {len(checked)} "
                 f"held-out prompts (before training)")
        verification["before"] = _verify(cfg, models.policy, tokenizer, checked)
    policy, result = run_phases(life, policy, examples, eval_examples, reference, pad_id,
                                sharing)
    if cfg.verify != "none":
        verification["after"] = _verify(cfg, policy.lm, tokenizer, checked)
        life.say(f"verifier pass rate: {verification['before']['pass_rate']:.3f} before, "
                 f"{verification['after']['pass_rate']:.3f} after")
        life.on_main(lambda: atomic_write_json(life.run.root / "verify.json", verification))
        result.eval_metrics.update({"verify/before": verification["before"]["pass_rate"],
                                    "verify/after": verification["after"]["pass_rate"]})
    return life.finish(result, save=lambda: save_model(policy.lm, tokenizer, life.run.final),
                       figures=("loss", "rewards/accuracy", "rewards/margin"))
