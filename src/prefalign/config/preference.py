"""Config of the preference-optimisation stage (the DPO family)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prefalign.config.base import StrictModel
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig


def _validate_loss_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against loss ``name``'s signature in the loss registry (imported
    here, at validation time, so that importing the config imports no torch)."""
    from prefalign.losses.preference import validate_loss_params

    return validate_loss_params(name, params)


class LossConfig(BaseModel):
    """A preference loss from ``prefalign.losses.preference`` and its parameters.

    Besides ``name`` and ``average_log_prob``, any key is a parameter of the named
    loss, checked against that loss's signature (unknown keys are an error that
    suggests the closest valid one); parameters left out take the loss's own
    default (β=0.1 for dpo, 2.0 for simpo). ``prefalign dpo --help`` lists them.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field("dpo", description="A registered preference loss: dpo, robust, ipo "
                      "(the paper's summed log-ratios), ipo_mean (per-token means, TRL's "
                      "ipo), hinge, simpo, orpo, rpo, caldpo, drdpo, xpo (records need a "
                      "reference_sample), or one registered with "
                      "prefalign.losses.preference.register_preference_loss.")
    average_log_prob: bool = Field(False, description="Use per-token mean log-probs instead "
                                   "of sums, for any loss (ipo with it equals ipo_mean).")

    @model_validator(mode="after")
    def _check_params(self) -> LossConfig:
        checked = _validate_loss_params(self.name, self.__pydantic_extra__ or {})
        if self.__pydantic_extra__:
            self.__pydantic_extra__.update(checked)
        return self

    def params(self) -> dict[str, Any]:
        """The loss parameters that were set (the rest keep the loss's defaults)."""
        return dict(self.__pydantic_extra__ or {})

    def updated(self, override: PhaseLossConfig) -> LossConfig:
        """This loss with a phase's settings applied (a new ``name`` keeps the
        parameters set here, which must then suit that loss too)."""
        return LossConfig.model_validate({**self.model_dump(),
                                          **override.model_dump(exclude_none=True)})


class PhaseLossConfig(LossConfig):
    """A phase's partial loss override: only the keys given replace the top-level ones."""

    name: str | None = Field(None, description="Loss of this phase (default: the "
                             "top-level loss.name).")
    average_log_prob: bool | None = Field(None, description="Per-token mean log-probs in "
                                          "this phase (default: the top-level setting).")

    @model_validator(mode="after")
    def _check_params(self) -> PhaseLossConfig:
        if self.name is not None:
            checked = _validate_loss_params(self.name, self.__pydantic_extra__ or {})
            if self.__pydantic_extra__:
                self.__pydantic_extra__.update(checked)
        return self


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
    loss: PhaseLossConfig = Field(default_factory=PhaseLossConfig, description="Loss "
                                  "settings that override the top-level loss for this phase.")
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
    verify: str = Field(
        "none", min_length=1, description="Task whose verifier measures the greedy pass rate "
        "on held-out prompts before and after training (any task with a verifier: "
        "arithmetic, countdown, gsm8k, minigrid, ...; checked when the stage starts; the "
        "held-out records carry the fields it reads); 'none': no measurement.")
    verify_samples: int = Field(100, gt=0, description="Held-out prompts for the verifier.")
    prefix_sharing: bool = Field(True, description="Lay each pair out as one row [prompt | "
                                 "chosen | rejected] with a mask that keeps chosen and rejected "
                                 "apart, so the prompt is computed once (exact; needs sdpa or "
                                 "eager attention, otherwise off).")

    def phase_losses(self) -> list[LossConfig]:
        """The loss of each phase: the top-level loss updated by the phase's settings."""
        losses = []
        for number, phase in enumerate(self.phases):
            try:
                losses.append(self.loss.updated(phase.loss))
            except ValidationError as err:
                raise ValueError(f"phases.{number}.loss: {err.errors()[0]['msg']}") from None
        return losses or [self.loss]

    @model_validator(mode="after")
    def _check_phase_losses(self) -> PreferenceConfig:
        self.phase_losses()
        return self
