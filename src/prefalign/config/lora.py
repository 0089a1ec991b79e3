"""LoRA settings (Hu et al. 2021): which layers get adapters, and how large they are.

Declared here, without torch, so that configs can be read before a model is loaded;
``prefalign.models.lora`` applies them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LoraSettings(BaseModel):
    """Which layers get LoRA adapters, and how large they are."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, gt=0, description=(
        "Rank of the low-rank update B·A; larger means more trainable parameters."))
    alpha: float = Field(32, gt=0, description=(
        "Scale of the update: the adapter output is multiplied by alpha / r."))
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Dropout probability applied to the adapter input during training."))
    target_modules: list[str] | Literal["auto", "all-linear"] = Field("auto", description=(
        "Module names to adapt (a name matches modules whose dotted path ends with it); "
        "'auto' = the attention projections of the architecture, 'all-linear' = attention "
        "and MLP projections."))


__all__ = ["LoraSettings"]
