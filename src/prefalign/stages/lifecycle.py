"""The one way a training stage runs: setup → train → finish.

Every stage (SFT, KTO, the DPO family, reward models, the online algorithms)
shares the steps around its training loop, and they live here once::

    life = Lifecycle(cfg, "dpo", resume, on_step_end)      # cfg: a stage config
    life.setup()                        # run dir (+ resume checks), threads, seed
    train, held_out = life.load_data("preference")   # split, leakage check, max_examples
    models = life.load_models(needs_reference=True)  # policy, tokenizer, reference
    examples = life.encode(train, encode_preference, models.tokenizer)
    life.write_manifest(datasets={"train": train, "eval": held_out}, train_pairs=...)
    result = life.train(model, algorithm)            # the Engine; repeatable (phases)
    life.finish(result, save=lambda: ..., figures=("loss", ...))

A stage module keeps only what is particular to it: its algorithm (batches and
step function), its encoding and its extra outputs.

Guarantees:

* ``load_models`` is the only place a policy and its reference are resolved.
  The policy comes from ``stages.common.load_policy`` (dropout off unless
  ``model.dropout``); the reference is ``adapter_disabled`` (the policy with
  its LoRA adapters switched off: ``ReferenceModel.context()``), ``separate`` (a
  frozen copy of ``reference.model`` or the starting model, in eval mode, no
  gradients, dropout off unless ``model.dropout``) or ``none``.
* ``autocast()`` is the precision the Engine trains in (``train.mixed_precision``),
  so log-probs computed outside the Engine (precomputed reference, old policy)
  match the ones computed inside a training step.
* ``save``, ``finish`` (``eval.json``, figures) and ``say`` act on the main
  process only; every message goes through ``prefalign.log.say``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prefalign.config import ModelConfig, TrainConfig
from prefalign.data.schema import Required
from prefalign.data.tokenize import encode_dataset
from prefalign.engine import distributed
from prefalign.engine.loop import Engine, TrainResult, seed_everything
from prefalign.engine.rundir import RunDir, atomic_write_json
from prefalign.errors import ConfigError
from prefalign.log import say
from prefalign.models.dropout import disable_dropout
from prefalign.models.load import default_device, load_model
from prefalign.report.curves import plot_training_curves
from prefalign.stages.common import (
    fingerprints,
    load_policy,
    load_train_eval,
    prepare_run,
    start_run,
)


@dataclass
class ReferenceModel:
    """The reference policy π_ref as loaded: which kind, and the frozen LM if separate.

    ``kind``: ``none`` (reference-free), ``adapter_disabled`` (the policy itself
    inside ``context()``), or ``separate`` (``lm``, a frozen copy).
    """

    kind: str = "none"
    lm: nn.Module | None = None
    policy_lm: nn.Module | None = None

    def context(self):
        """Inside it, the policy computes π_ref when ``kind`` is ``adapter_disabled``."""
        if self.kind == "adapter_disabled" and self.policy_lm is not None:
            disable = getattr(self.policy_lm, "disable_adapter", None)
            if callable(disable):
                return disable()
        return contextlib.nullcontext()


@dataclass
class Models:
    """What ``load_models`` returns: the trainable LM, its tokenizer and the reference."""

    policy: nn.Module
    tokenizer: Any
    reference: ReferenceModel = field(default_factory=ReferenceModel)


def reference_source(model_cfg: ModelConfig, reference_cfg) -> str:
    """``adapter_disabled`` or ``separate``: ``auto`` is the former under LoRA."""
    source = getattr(reference_cfg, "source", "auto")
    if source == "auto":
        return "adapter_disabled" if model_cfg.lora is not None else "separate"
    if source == "adapter_disabled" and model_cfg.lora is None:
        raise ConfigError("reference.source=adapter_disabled needs model.lora "
                          "(a full fine-tune has no adapters to disable)")
    return source


def load_frozen(name: str, model_cfg: ModelConfig) -> nn.Module:
    """A frozen LM (eval mode, no gradients; dropout off unless ``model.dropout``)."""
    lm, _ = load_model(name, dtype=model_cfg.dtype)
    if not model_cfg.dropout:
        disable_dropout(lm)
    return lm.requires_grad_(False).eval()


def resolve_reference(model_cfg: ModelConfig, reference_cfg, policy_lm: nn.Module,
                      needed: bool = True) -> ReferenceModel:
    """The reference ``reference_cfg`` (a ``ReferenceConfig`` or None) asks for."""
    if not needed:
        return ReferenceModel("none")
    source = reference_source(model_cfg, reference_cfg)
    if source == "adapter_disabled":
        return ReferenceModel("adapter_disabled", policy_lm=policy_lm)
    name = getattr(reference_cfg, "model", None) or model_cfg.name
    return ReferenceModel("separate", lm=load_frozen(name, model_cfg))


def autocast_context(train_cfg: TrainConfig, device: torch.device):
    """The autocast the Engine trains under (``train.mixed_precision``) on ``device``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train_cfg.mixed_precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class Lifecycle:
    """setup → train → finish for one stage config ``cfg`` (see the module docstring).

    ``cfg`` has ``run_dir``, ``model``, ``data``, ``train`` and optionally
    ``reference``; ``stage`` names the stage in messages and the manifest.
    """

    def __init__(self, cfg, stage: str, resume: bool = False,
                 on_step_end: Callable[[int, dict], None] | None = None):
        self.cfg, self.stage, self.resume, self.on_step_end = cfg, stage, resume, on_step_end
        self.run: RunDir | None = None
        self.engine: Engine | None = None
        self.skipped: dict[str, dict[str, int]] = {}

    # -- setup --------------------------------------------------------------
    def setup(self, progress: bool | None = None, allow_phases: bool = False) -> RunDir:
        """Create the run directory (refusing to overwrite a run in progress or to
        resume nothing; ``progress`` overrides the checkpoint test), set threads, seed."""
        if progress is None:
            self.run = prepare_run(self.cfg, self.resume, allow_phases)
        else:
            self.run = start_run(RunDir(self.cfg.run_dir), self.cfg, self.resume, progress)
        if self.cfg.train.threads is not None:
            torch.set_num_threads(self.cfg.train.threads)
        seed_everything(self.cfg.train.seed)
        return self.run

    def load_data(self, kind: str, require: Required | None = None
                  ) -> tuple[list[dict], list[dict]]:
        """Training and held-out records: eval file (leakage-checked) or a split, both by
        the training source's content key (``load_train_eval``), training rows capped at
        ``data.max_examples`` (or a weighted mixture of that many); ``require``: fields
        every record must carry, ``{field: why}``."""
        return load_train_eval(self.cfg.data, kind, self.cfg.train.seed, require)

    def load_models(self, needs_reference: bool = False) -> Models:
        """The policy (``load_policy``), its tokenizer and, if needed, the reference."""
        policy, tokenizer = load_policy(self.cfg.model)
        reference = resolve_reference(self.cfg.model, getattr(self.cfg, "reference", None),
                                      policy, needs_reference)
        return Models(policy, tokenizer, reference)

    def encode(self, records: Sequence[dict], encoder: Callable[..., dict], tokenizer,
               label: str = "train", **kwargs) -> list[dict]:
        """``encode_dataset`` with the config's lengths; skipped rows are reported."""
        data = self.cfg.data
        settings = dict(tokenizer=tokenizer, max_length=data.max_length,
                        max_prompt_length=data.max_prompt_length, truncation=data.truncation,
                        use_chat_template=data.use_chat_template)
        examples, report = encode_dataset(records, encoder, **{**settings, **kwargs})
        if report.skipped:
            self.say(f"{label}: {report.summary()}")
        self.skipped[label] = report.counts
        return examples

    def write_manifest(self, datasets: dict[str, list[dict]], **extra: Any) -> None:
        self.run.write_manifest(stage=self.stage, seed=self.cfg.train.seed,
                                model_source=self.cfg.model.name,
                                datasets=fingerprints(**datasets), extra=extra or None)

    def autocast(self, device: torch.device | None = None):
        """The training precision, for passes run outside the Engine (on ``device``,
        default this process's device)."""
        return autocast_context(self.cfg.train, device or default_device())

    # -- train --------------------------------------------------------------
    def train(self, model: nn.Module, algorithm, train_cfg: TrainConfig | None = None,
              run: RunDir | None = None, resume: bool | None = None) -> TrainResult:
        """Run the Engine on ``algorithm``; ``run`` (default the stage's) receives its
        checkpoints and metrics. ``self.engine`` keeps the last Engine."""
        self.engine = Engine(model, algorithm, train_cfg or self.cfg.train, run or self.run,
                             on_step_end=self.on_step_end)
        return self.engine.train(resume=self.resume if resume is None else resume)

    def trained(self, model: nn.Module | None = None) -> nn.Module:
        """The last Engine's model without its distributed wrappers."""
        return self.engine.accelerator.unwrap_model(self.engine.model) if model is None \
            else model

    # -- finish -------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return distributed.is_main_process()

    def say(self, message: str) -> None:
        if self.is_main:
            say(self.stage, message)

    def on_main(self, action: Callable[[], Any]) -> None:
        """Run ``action`` (a save, a write) on the main process; the others wait."""
        if self.is_main:
            action()
        distributed.barrier()

    def finish(self, result: TrainResult, save: Callable[[], Any] | None = None,
               figures: Sequence[str] = ("loss",), eval_metrics: dict | None = None
               ) -> TrainResult:
        """Save (``save``), write ``eval.json`` and the training-curve figure, on the
        main process only."""
        if eval_metrics is not None:
            result.eval_metrics = eval_metrics

        def write() -> None:
            if save is not None:
                save()
            atomic_write_json(self.run.root / "eval.json", result.eval_metrics)
            if figures:
                plot_training_curves(self.run.metrics_path, self.run.figures / "training.png",
                                     tuple(figures))

        self.on_main(write)
        return result
