"""Typed configuration for every stage: YAML files plus ``key=value`` overrides.

Each stage has one pydantic model. Unknown keys are an error naming the key and
suggesting the closest valid one; values are type-checked. Overrides use dots
for nesting (``train.lr=1e-4``) and YAML syntax for values (``lora=null``,
``train.trackers=[tensorboard]``). The resolved config is written into the run
directory as ``config.yaml``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefalign.errors import ConfigError
from prefalign.models.lora import LoraSettings


class StrictModel(BaseModel):
    """A config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(StrictModel):
    """Which model to train and how."""

    name: str = Field("embedded", description="'embedded' (SmolLM2-135M-Instruct, offline), "
                      "'tiny' (random, for smoke tests), a local path or a hub id.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; 'auto' is float32 on CPU and bfloat16 on a GPU.")
    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters; null for a full fine-tune.")
    qlora: bool = Field(False, description="Load the base in 4-bit NF4 (needs CUDA + bitsandbytes).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")


class DataConfig(StrictModel):
    """Where the data comes from and how it is tokenised."""

    train: str = Field(..., description="Training data: a .jsonl/.json/.parquet/.csv path, "
                       "'hf:NAME[:SPLIT]', or 'builtin:NAME'.")
    eval: str | None = Field(None, description="Held-out data; if absent, eval_fraction of "
                             "train is split off by prompt.")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Held-out share when no eval file.")
    max_length: int = Field(512, gt=8, description="Maximum prompt + completion tokens.")
    max_prompt_length: int = Field(384, gt=0, description="Maximum prompt tokens.")
    truncation: Literal["keep_end", "keep_start"] = Field(
        "keep_end", description="Which end of an over-long prompt to keep.")
    use_chat_template: bool = Field(True, description="Render prompts with the tokenizer's "
                                    "chat template.")
    max_examples: int | None = Field(None, gt=0, description="Use at most this many training rows.")


class TrainConfig(StrictModel):
    """The optimisation loop shared by every stage."""

    lr: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data.")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    batch_size: int = Field(8, gt=0, description="Examples per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule (transformers' schedulers).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null for none.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="Autocast precision.")
    seed: int = Field(0, description="Seeds python, numpy and torch, and the data order.")
    eval_every: int = Field(0, ge=0, description="Evaluate every N steps (0: only at the end).")
    save_every: int = Field(50, ge=0, description="Checkpoint every N steps (0: never).")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    log_every: int = Field(1, gt=0, description="Write metrics every N steps.")
    trackers: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim"]] = Field(
        default_factory=list, description="Extra trackers besides metrics.jsonl.")
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: torch's).")


class RunConfig(StrictModel):
    """Common fields of every stage: the run's name and directory."""

    name: str = Field("run", description="Run name; output goes to output_dir/name.")
    output_dir: str = Field("runs", description="Parent folder of run directories.")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


class SFTConfig(RunConfig):
    """Supervised fine-tuning: loss on completion tokens only."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    packing: bool = Field(False, description="Pack several examples per row (padding-free).")


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _parse_value(raw: str) -> Any:
    """A YAML scalar or collection; ``1e-4`` (a string to YAML 1.1) becomes a float."""
    if raw == "":
        return ""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict, values parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        value = _parse_value(raw)
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets a field inside a non-section")
        node[parts[-1]] = value
    return nested


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``, recursing into sub-dicts."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _section_model(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (for suggestions)."""
    current: Any = cls
    for part in loc[:-1]:
        if isinstance(part, int) or not hasattr(current, "model_fields"):
            return current if hasattr(current, "model_fields") else None
        field = current.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        current = next((c for c in candidates if isinstance(c, type)
                        and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current


def describe_validation_error(cls: type[BaseModel], error: ValidationError, source: str) -> str:
    """One line naming the first bad key, with a suggestion for misspellings."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    dotted = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        owner = _section_model(cls, loc)
        valid = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
        return f"{source}: unknown config key '{dotted}'{hint}"
    if first["type"] == "missing":
        return f"{source}: missing required config key '{dotted}'"
    return f"{source}: config key '{dotted}': {first['msg']} (got {first.get('input')!r})"


def load_config(cls: type[ConfigT], path: str | Path | None = None,
                overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> ConfigT:
    """Build a stage config from optional defaults, a YAML file and overrides."""
    raw: dict[str, Any] = dict(defaults or {})
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{where}: invalid YAML: "
                              f"{getattr(exc, 'problem', exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys to values")
        raw = deep_merge(raw, loaded)
    if overrides:
        raw = deep_merge(raw, parse_overrides(overrides))
        source = f"{source} (with overrides)"
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(cls, exc, source)) from None


def config_to_yaml(config: BaseModel) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


class LossConfig(StrictModel):
    """A preference loss from ``prefalign.losses.preference`` and its parameters.

    Parameters left null take the loss's own default (β=0.1 for dpo, 2.0 for simpo).
    """

    name: str = Field("dpo", description="dpo, robust, ipo, hinge, simpo, orpo, rpo, caldpo, "
                      "drdpo.")
    beta: float | None = Field(None, gt=0, description="β, the strength of the KL anchor.")
    epsilon: float | None = Field(None, ge=0, lt=0.5, description="Label smoothing ε (cDPO, "
                                  "robust, simpo).")
    center_logits: bool | None = Field(None, description="dpo: subtract the batch mean of h.")
    gamma: float | None = Field(None, description="simpo: target reward margin γ.")
    lam: float | None = Field(None, gt=0, description="orpo: weight λ of the odds-ratio term.")
    alpha: float | None = Field(None, ge=0, description="rpo: weight α of the NLL term.")
    beta_prime: float | None = Field(None, gt=0, description="drdpo: temperature β′.")
    average_log_prob: bool = Field(False, description="Use per-token mean log-probs instead "
                                   "of sums (for any loss).")

    def params(self) -> dict[str, float | bool]:
        """The loss parameters that were set (the rest keep the loss's defaults)."""
        names = ["beta", "epsilon", "center_logits", "gamma", "lam", "alpha", "beta_prime"]
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class ReferenceConfig(StrictModel):
    """Where the reference policy π_ref comes from."""

    source: Literal["auto", "adapter_disabled", "separate"] = Field(
        "auto", description="'adapter_disabled': the policy with LoRA switched off (no second "
        "copy); 'separate': a frozen copy of reference.model; 'auto': the former under LoRA.")
    model: str | None = Field(None, description="Reference model for source=separate "
                              "(default: the policy's starting model).")
    precompute: bool = Field(True, description="Compute reference log-probs once before "
                             "training and cache them on disk, keyed by model, tokens and "
                             "length limits.")


class PhaseConfig(StrictModel):
    """One phase of a multi-phase schedule, run from the previous phase's weights."""

    epochs: float = Field(1.0, gt=0, description="Passes over this phase's data.")
    loss: dict[str, Any] = Field(default_factory=dict, description="Loss settings that "
                                 "override the top-level loss for this phase.")
    filter_noisy: float = Field(0.0, ge=0, lt=1, description="Drop this fraction of pairs with "
                                "the lowest reference margin before the phase.")
    lr: float | None = Field(None, gt=0, description="Learning rate for this phase.")


class PreferenceConfig(RunConfig):
    """Offline preference optimisation (the DPO family) on {prompt, chosen, rejected} pairs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    filter_noisy: float = Field(0.0, ge=0, lt=1, description="Drop this fraction of pairs with "
                                "the lowest reference margin refc − refr.")
    phases: list[PhaseConfig] = Field(default_factory=list, description="Optional list of "
                                      "phases run in order; each phase's epochs replace "
                                      "train.epochs.")
    verify: Literal["none", "arithmetic"] = Field(
        "none", description="Built-in verifier used to measure greedy pass rate on held-out "
        "prompts before and after training.")
    verify_samples: int = Field(100, gt=0, description="Held-out prompts for the verifier.")
