"""Config sections shared by the stages: model, data, training loop, run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from prefalign.config.base import StrictModel
from prefalign.config.lora import LoraSettings


class ModelConfig(StrictModel):
    """Which model to train and how."""

    name: str = Field("embedded", description="'embedded' (SmolLM2-135M-Instruct, offline), "
                      "'tiny' (random, for smoke tests), a local path or a hub id.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; 'auto' is float32 on CPU and bfloat16 on a GPU.")
    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters; null for a full fine-tune.")
    qlora: bool = Field(False, description="Load the base in 4-bit NF4 (needs CUDA + "
                        "bitsandbytes).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    dropout: bool = Field(False, description="Keep the model's dropout (and LoRA dropout) active "
                          "in training; off by default, so that at step 0 the policy equals its "
                          "reference (DPO margin 0, PPO ratio 1).")


class MixtureSource(StrictModel):
    """One source of a weighted training mixture."""

    source: str = Field(..., min_length=1, description="A data source, as data.train takes.")
    weight: float = Field(..., gt=0, allow_inf_nan=False, description="Relative share of "
                          "the mixture's training records (any positive number).")

    @field_validator("weight", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"must be a positive number, got {value}")
        return value


def _mixture(value: list) -> list[MixtureSource]:
    """``value`` as mixture sources, or a ValueError naming the first bad one in one line."""
    if not value:
        raise ValueError("a mixture needs at least one {source, weight}")
    sources = []
    for index, item in enumerate(value):
        try:
            sources.append(MixtureSource.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            where = "".join(f" {part}" for part in first["loc"])
            reason = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"mixture source {index}{where}: {reason} (each item is "
                             f"{{source: ..., weight: ...}})") from None
    return sources


class DataConfig(StrictModel):
    """Where the data comes from and how it is tokenised."""

    train: str | list[MixtureSource] = Field(
        ..., description="Training data: a .jsonl/.json/.parquet/.csv path, "
        "'hf:NAME[:SPLIT]', or 'builtin:NAME'; or a weighted mixture "
        "[{source: a.jsonl, weight: 0.7}, {source: 'builtin:arithmetic?n=200', weight: 0.3}] "
        "of data.max_examples records (default: the sources' training records together), "
        "each source's share proportional to its weight (prefalign.data.mixture).")
    eval: str | None = Field(None, description="Held-out data; if absent, eval_fraction of "
                             "train is split off by prompt.")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                 description="Held-out share when no eval file.")
    max_length: int = Field(512, gt=8, description="Maximum prompt + completion tokens.")
    max_prompt_length: int = Field(384, gt=0, description="Maximum prompt tokens.")
    truncation: Literal["keep_end", "keep_start"] = Field(
        "keep_end", description="Which end of an over-long prompt to keep.")
    use_chat_template: bool = Field(True, description="Render prompts with the tokenizer's "
                                    "chat template.")
    max_examples: int | None = Field(None, gt=0, description="Use at most this many training "
                                     "rows (a mixture: exactly this many).")

    @field_validator("train", mode="before")
    @classmethod
    def _train_mixture(cls, value: object) -> object:
        return _mixture(value) if isinstance(value, list) else value

    @property
    def train_name(self) -> str:
        """``train`` as text for messages: the source, or ``a.jsonl×0.7 + b×0.3``."""
        if isinstance(self.train, str):
            return self.train
        return " + ".join(f"{part.source}×{part.weight:g}" for part in self.train)


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
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (β₁, β₂), each "
                                            "in [0, 1).")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW ε.")
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

    @field_validator("adam_betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"each AdamW beta must be in [0, 1), got {list(betas)}")
        return betas


class RunConfig(StrictModel):
    """Common fields of every stage: the run's name and directory."""

    name: str = Field("run", description="Run name; output goes to output_dir/name.")
    output_dir: str = Field("runs", description="Parent folder of run directories.")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name
