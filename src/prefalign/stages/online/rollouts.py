"""What an online algorithm's functions see: a rollout, the inputs of a micro-batch's
loss, and the clipped policy loss they share; plus seeded orders and the rollout log.

Shapes: a rollout holds ``N = P·G`` sequences (``G`` per prompt, grouped by
prompt); token tensors are ``[N, T]`` and zero off ``completion_mask``.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

import torch

from prefalign.config.online import OnlineConfig
from prefalign.engine.distributed import is_main_process
from prefalign.engine.metrics import read_metrics
from prefalign.engine.rundir import atomic_write_text
from prefalign.losses.policy import policy_clip_loss
from prefalign.rollout.types import Completion


def derived_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across processes and platforms)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def seeded_permutation(size: int, *parts: object) -> list[int]:
    order = list(range(size))
    random.Random(derived_seed(*parts)).shuffle(order)
    return order


@dataclass
class Rollout:
    """One rollout of ``N`` sequences (the rows of ``tensors``, grouped by prompt).

    ``rewards`` ``[N]``; ``old_logps``, ``ref_logps``, ``values`` ``[N, T]`` (``None``
    when not recorded); ``kl_coef`` the β in force for this rollout; ``step_rewards``
    (with ``policy.process_reward``) each completion's step rewards and step end
    tokens. An algorithm's
    ``advantages`` function sets ``advantages`` (``[N]`` or ``[N, T]``) and, if its
    loss needs them, ``returns`` ``[N, T]``.
    """

    index: int
    first_step: int
    rows: list[dict]  # the prompt record of each sequence
    completions: list[Completion]
    tensors: dict[str, torch.Tensor]
    rewards: torch.Tensor
    group: int = 1
    kl_coef: float = 0.0
    old_logps: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    step_rewards: tuple[list[list[float]], list[list[int]]] | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def mask(self) -> torch.Tensor:
        """``completion_mask`` as floats, ``[N, T]``."""
        return self.tensors["completion_mask"].float()


@dataclass
class LossInputs:
    """One micro-batch of a rollout, on the training device, ``[B, T]`` unless noted:
    ``logps`` (with gradient), ``old_logps``, ``ref_logps`` (or ``None``), ``values`` and
    ``old_values`` (with a value head), ``advantages`` (``[B]`` or ``[B, T]``),
    ``returns``, ``mask``, and the rollout's ``kl_coef`` β."""

    logps: torch.Tensor
    old_logps: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    kl_coef: float = 0.0
    ref_logps: torch.Tensor | None = None
    values: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def clipped_policy_loss(x: LossInputs, cfg: OnlineConfig) -> tuple[torch.Tensor,
                                                                   dict[str, float]]:
    """PPO's clipped surrogate (``losses.policy.policy_clip_loss``) with the run's clip
    range and token reduction (``policy.*``; ``constant`` divides by
    ``rollout.max_new_tokens``), and its metrics."""
    p = cfg.policy
    loss, stats = policy_clip_loss(x.logps, x.old_logps, x.advantages, x.mask, p.clip_eps,
                                   p.clip_eps_high, p.reduction, cfg.rollout.max_new_tokens)
    return loss, {"policy/loss": float(loss.detach()),
                  "policy/clip_frac": float(stats["clip_frac"]),
                  "policy/approx_kl": float(stats["approx_kl"])}


class RolloutLog:
    """``rollouts.jsonl``: one row of statistics per rollout, for resume and reports."""

    def __init__(self, path):
        self.path = path

    def keep_before(self, index: float) -> list[dict]:
        """Drop rows of rollouts ``>= index``; return the rest."""
        rows = [r for r in read_metrics(self.path) if r["rollout"] < index]
        if is_main_process():
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def append(self, row: dict) -> None:
        if is_main_process():
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
