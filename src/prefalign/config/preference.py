"""Config of the preference-optimisation stage (the DPO family)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from prefalign.config.base import StrictModel
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig


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
    prefix_sharing: bool = Field(True, description="Lay each pair out as one row [prompt | "
                                 "chosen | rejected] with a mask that keeps chosen and rejected "
                                 "apart, so the prompt is computed once (exact; needs sdpa or "
                                 "eager attention, otherwise off).")
