"""The reference policy π_ref of the online stages.

Under LoRA the reference is the policy itself with its adapters switched off
(no second copy of the weights); for a full fine-tune it is a frozen copy of
the starting model (or of ``reference.model``). Either way it is a
``PolicyModel`` at the rollout temperature, used without gradients.
"""

from __future__ import annotations

import contextlib

import torch

from prefalign.config.online import OnlineConfig
from prefalign.errors import ConfigError
from prefalign.models.load import load_model
from prefalign.stages.online.model import PolicyModel, unwrap
from prefalign.stages.online.sequences import forward_in_batches


class ReferencePolicy:
    """π_ref: ``logps`` of packed sequences, and the LM to generate reference responses."""

    def __init__(self, policy: PolicyModel, frozen: PolicyModel | None = None):
        self.policy, self.frozen = policy, frozen
        self.kind = "separate" if frozen is not None else "adapter_disabled"

    def context(self):
        """Inside it, ``self.lm`` and ``self.model`` compute the reference."""
        if self.frozen is not None:
            return contextlib.nullcontext()
        return unwrap(self.policy).reference_context()

    @property
    def model(self) -> PolicyModel:
        return self.frozen if self.frozen is not None else unwrap(self.policy)

    @property
    def lm(self) -> torch.nn.Module:
        return self.model.lm

    def logps(self, tensors: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        """Reference log-probs ``[N, T]`` of the completion tokens (CPU, no grad)."""
        with self.context():
            logps, _ = forward_in_batches(self.model, tensors, batch_size)
        return logps


def build_reference(cfg: OnlineConfig, policy: PolicyModel) -> ReferencePolicy:
    """The reference chosen by ``cfg.reference`` (see the module docstring)."""
    source = cfg.reference.source
    if source == "auto":
        source = "adapter_disabled" if cfg.model.lora is not None else "separate"
    if source == "adapter_disabled":
        if cfg.model.lora is None:
            raise ConfigError("reference.source=adapter_disabled needs model.lora (a full "
                              "fine-tune has no adapters to disable)")
        return ReferencePolicy(policy)
    ref_lm, _ = load_model(cfg.reference.model or cfg.model.name, dtype=cfg.model.dtype)
    ref_lm.requires_grad_(False).eval()
    return ReferencePolicy(policy, PolicyModel(ref_lm, cfg.rollout.temperature))
