"""The reference policy π_ref of the online stages.

The lifecycle resolves it (``stages.lifecycle.Lifecycle.load_models``): under LoRA
the policy itself with its adapters switched off (no second copy of the
weights), for a full fine-tune a frozen copy of the starting model (or of
``reference.model``), dropout off unless ``model.dropout``. Here it becomes a
``PolicyModel`` at the run's one log-prob temperature (``logprob_temperature``),
used without gradients and in eval mode, so that at step 0 its log-probs equal
the policy's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from prefalign.config.online import OnlineConfig
from prefalign.stages.lifecycle import ReferenceModel
from prefalign.stages.online.model import PolicyModel, logprob_temperature, unwrap
from prefalign.stages.online.sequences import forward, forward_groups


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``model`` in eval mode inside the block, its mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class ReferencePolicy:
    """π_ref: log-probs of packed sequences, and the LM to generate reference responses."""

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

    def logps(self, tensors: dict[str, torch.Tensor],
              chunks: Sequence[Sequence[int]]) -> torch.Tensor:
        """Reference log-probs ``[N, T]`` of the completion tokens (CPU, no grad), one
        pass per chunk of prompts (``sequences.forward_groups``)."""
        with self.context(), evaluating(self.model):
            logps, _ = forward_groups(self.model, tensors, chunks)
        return logps

    @torch.no_grad()
    def batch_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reference log-probs ``[B, T]`` of a batch already on the device (no grad)."""
        with self.context(), evaluating(self.model):
            return forward(self.model, batch)[0]


def build_reference(cfg: OnlineConfig, policy: PolicyModel,
                    reference: ReferenceModel) -> ReferencePolicy:
    """The lifecycle's ``reference`` as a ``ReferencePolicy`` of ``policy``."""
    if reference.kind == "separate":
        return ReferencePolicy(policy, PolicyModel(reference.lm, logprob_temperature(cfg)))
    return ReferencePolicy(policy)
