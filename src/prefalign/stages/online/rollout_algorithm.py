"""The online loop on the shared Engine: rollouts as batches, policy updates as steps.

Design. The Engine asks for micro-batch ``i`` of epoch ``e`` and steps on it;
here an epoch is one pass over the training prompts in a seeded order, cut
into rollouts of ``P = rollout.prompts_per_rollout`` prompts. A rollout
(``N = P·G`` sequences, G samples per prompt) is made lazily by the first
``batch`` call that needs it: the current policy generates under ``no_grad``,
the rewards score, optional no-grad forwards give π_old (and values) and
π_ref log-probs, and the algorithm turns rewards into advantages. The rollout
then serves ``policy.epochs_per_rollout`` passes, each split into minibatches
of ``train.batch_size × train.grad_accum`` sequences (one optimizer step each,
``train.batch_size`` per micro-batch), in a seeded order. Micro-batches hold
whole groups (``batch_size / G`` prompts with all their samples), so the
forward runs each prompt once for its ``G`` completions (``model.py``). So micro-batch ``i``
of epoch ``e`` maps to (rollout ``i // M``, pass, minibatch) with
``M = epochs · N / batch_size``, and one optimizer step never spans two rollouts.

Exact ratios. π_old is the training forward itself: when a rollout feeds a
single update, ``log π_old = log π_θ`` detached (the weights have not moved),
free and exact; otherwise a no-grad pass of the same ``PolicyModel`` right
after generation records it. Both use the sampling temperature.

Resume. Prompt order, minibatch order and the sampling seed of rollout ``k``
are pure functions of (seed, epoch, k), so a resumed run feeds the same
prompts in the same order. Sampled tokens are identical only when the
checkpoint falls on a rollout boundary (``train.save_every`` a multiple of
the updates per rollout) and the engine is deterministic (the transformers
engine on CPU is; CUDA kernels and vLLM may not be): a checkpoint inside a
rollout regenerates that rollout from the partly updated weights. State kept
between rollouts (the adaptive KL coefficient, the hacking monitor) is
rebuilt from ``rollouts.jsonl`` and the logged evaluations, which the resume
truncates to the rollouts completed before the checkpoint.

Several processes. Each rank builds the rollouts its micro-batches need with
the same seed, so the ranks sample the same completions wherever generation is
deterministic (and still valid on-policy samples where it is not); only rank 0
writes the run's files.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from prefalign.engine.algorithm import StepOutput
from prefalign.engine.distributed import is_main_process
from prefalign.engine.metrics import read_metrics
from prefalign.engine.rundir import atomic_write_text
from prefalign.errors import ConfigError
from prefalign.eval.policy import PolicyEvaluation
from prefalign.losses.policy import kl_penalty, masked_mean
from prefalign.rollout.batch import pack_groups
from prefalign.rollout.types import Completion
from prefalign.stages.online.sequences import forward, forward_in_batches, group_rows, select_groups
from prefalign.stages.online.setup import OnlineSetup


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
    """One rollout of ``N`` sequences (the rows of ``tensors``, grouped by prompt)."""

    index: int
    first_step: int
    rows: list[dict]  # the prompt record of each sequence
    completions: list[Completion]
    tensors: dict[str, torch.Tensor]
    rewards: torch.Tensor
    old_logps: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class MicroBatch:
    """Whole groups of a rollout: its prompts and their completion rows."""

    rollout: Rollout
    prompts: list[int]
    rows: list[int]


class RolloutLog:
    """``rollouts.jsonl``: one row of statistics per rollout, for resume and reports."""

    def __init__(self, path):
        self.path = path

    def keep_before(self, index: int) -> list[dict]:
        """Drop rows of rollouts ``>= index``; return the rest."""
        rows = [r for r in read_metrics(self.path) if r["rollout"] < index]
        if is_main_process():
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def append(self, row: dict) -> None:
        if is_main_process():
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


def sequence_kl(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ_t (log π − log π_ref)`` per sequence, ``[N]``: the k1 estimate of the sequence KL."""
    return ((logps - ref_logps) * mask).sum(-1)


class RolloutAlgorithm(ABC):
    """Shared rollout machinery (see the module docstring); subclasses add advantages
    (``prepare``) and the loss (``loss``)."""

    needs_values = False

    def __init__(self, setup: OnlineSetup):
        self.setup = setup
        cfg = setup.cfg
        self.group = cfg.rollout.num_samples
        self.prompts_per_rollout = cfg.rollout.prompts_per_rollout
        self.micro_size = cfg.train.batch_size
        self.prompts_per_micro = self.micro_size // self.group
        self.micro_per_pass = cfg.sequences_per_rollout // self.micro_size
        self.micro_per_rollout = cfg.policy.epochs_per_rollout * self.micro_per_pass
        self.rollouts_per_epoch = len(setup.records) // self.prompts_per_rollout
        if self.rollouts_per_epoch == 0:
            raise ConfigError(f"{len(setup.records)} training prompts are fewer than "
                              f"rollout.prompts_per_rollout={self.prompts_per_rollout}")
        self.log = RolloutLog(setup.run.root / "rollouts.jsonl")
        self.current: Rollout | None = None
        self.last_step = 0
        self.last_evaluation: PolicyEvaluation | None = None
        self._started = False

    # -- hooks -------------------------------------------------------------
    @property
    def needs_reference(self) -> bool:
        """Whether rollouts record π_ref log-probs."""
        return self.setup.cfg.kl.coef > 0

    @property
    def needs_old(self) -> bool:
        """Whether rollouts record π_old log-probs (and values) in a no-grad pass."""
        return self.setup.cfg.updates_per_rollout > 1 or self.needs_values

    @abstractmethod
    def prepare(self, rollout: Rollout) -> dict[str, float]:
        """Set ``rollout.advantages`` (and anything else the loss needs); return metrics."""

    @abstractmethod
    def loss(self, rollout: Rollout, rows: list[int], batch: dict[str, torch.Tensor],
             logps: torch.Tensor, values: torch.Tensor | None,
             old_logps: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch and its metrics."""

    def restore(self, rows: list[dict]) -> None:
        """Rebuild state kept between rollouts from the logged rows of a resumed run."""

    # -- the Engine's interface ---------------------------------------------
    def num_batches(self, epoch: int) -> int:
        return self.rollouts_per_epoch * self.micro_per_rollout

    def prompt_order(self, epoch: int) -> list[int]:
        """The training prompts of ``epoch`` in their seeded order."""
        return seeded_permutation(len(self.setup.records), self.setup.cfg.train.seed,
                                  "prompts", epoch)

    def batch(self, epoch: int, index: int) -> MicroBatch:
        local, within = divmod(index, self.micro_per_rollout)
        rollout_index = epoch * self.rollouts_per_epoch + local
        accum = self.setup.cfg.train.grad_accum
        self.last_step = (rollout_index * self.micro_per_rollout + within) // accum + 1
        if not self._started:
            self._start(rollout_index)
        if self.current is None or self.current.index != rollout_index:
            self.current = self._make_rollout(epoch, local, rollout_index)
        pass_number, minibatch = divmod(within, self.micro_per_pass)
        order = seeded_permutation(self.prompts_per_rollout, self.setup.cfg.train.seed,
                                   "minibatch", rollout_index, pass_number)
        size = self.prompts_per_micro
        prompts = order[minibatch * size:(minibatch + 1) * size]
        return MicroBatch(self.current, prompts, group_rows(prompts, self.group))

    def step(self, model: torch.nn.Module, micro: MicroBatch) -> StepOutput:
        device = next(model.parameters()).device
        rollout = micro.rollout
        batch = select_groups(rollout.tensors, micro.prompts, device)
        logps, values = forward(model, batch)
        width = logps.shape[1]
        old = logps.detach() if rollout.old_logps is None else \
            rollout.old_logps[micro.rows, :width].to(device)
        loss, metrics = self.loss(rollout, micro.rows, batch, logps, values, old)
        tokens = int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())
        return StepOutput(loss, {**rollout.metrics, **metrics}, tokens=tokens)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        self.last_evaluation, metrics = self.setup.evaluate(model, self.last_step)
        return metrics

    # -- rollouts ----------------------------------------------------------
    def _start(self, rollout_index: int) -> None:
        """First batch of this process: keep the log of completed rollouts, rebuild state."""
        self._started = True
        rows = self.log.keep_before(rollout_index)
        evaluations = [(int(r["step"]), float(r["eval/kl"]))
                       for r in read_metrics(self.setup.run.metrics_path) if "eval/kl" in r]
        self.setup.monitor.replay(rows, evaluations)
        self.setup.monitor.write(self.setup.run.root / "alerts.json")
        self.restore(rows)

    def _generate(self, epoch: int, local: int, index: int):
        setup = self.setup
        order = self.prompt_order(epoch)
        chosen = order[local * self.prompts_per_rollout:(local + 1) * self.prompts_per_rollout]
        setup.engine.sync_weights(setup.policy.lm)
        groups = setup.engine.generate([setup.prompt_ids[i] for i in chosen], setup.sampling,
                                       derived_seed(setup.cfg.train.seed, "rollout", index))
        rows = [setup.records[i] for i in chosen for _ in range(self.group)]
        prompt_ids = [setup.prompt_ids[i] for i in chosen]
        completions = [c for group in groups for c in group]
        return rows, prompt_ids, completions

    def _make_rollout(self, epoch: int, local: int, index: int) -> Rollout:
        setup, cfg = self.setup, self.setup.cfg
        rows, prompt_ids, completions = self._generate(epoch, local, index)
        scores = setup.scorer.score([r["prompt"] for r in rows],
                                    setup.completion_texts(completions), rows)
        tensors = pack_groups(prompt_ids, [c.token_ids for c in completions], setup.pad_id)
        rollout = Rollout(index, index * cfg.updates_per_rollout + 1, rows, completions,
                          tensors, scores.total)
        if self.needs_old:
            rollout.old_logps, rollout.values = forward_in_batches(setup.policy, tensors,
                                                                   self.micro_size)
        if self.needs_reference:
            rollout.ref_logps = setup.reference.logps(tensors, self.micro_size)
        lengths = tensors["completion_lengths"].float()
        metrics = {"reward/mean": float(scores.total.mean()),
                   "reward/std": float(scores.total.std(correction=0)),
                   "rollout/length_mean": float(lengths.mean()),
                   "rollout/length_std": float(lengths.std(correction=0)),
                   "rollout/truncated": sum(c.finish == "length" for c in completions)
                   / len(completions),
                   "rollout/sequences": float(len(completions))}
        metrics.update({f"reward/{k}": float(v.mean()) for k, v in scores.components.items()
                        if len(scores.components) > 1})
        if scores.passed is not None:
            metrics["rollout/pass_rate"] = sum(scores.passed) / len(scores.passed)
        if rollout.ref_logps is not None and rollout.old_logps is not None:
            kl = sequence_kl(rollout.old_logps, rollout.ref_logps,
                             tensors["completion_mask"].float())
            metrics["kl/ref"] = float(kl.mean())
        disagreement = None
        if scores.disagreement is not None:
            disagreement = float(scores.disagreement.mean())
            metrics["reward/ensemble_std"] = disagreement
        metrics.update(self.prepare(rollout))
        metrics.update(setup.monitor.observe_rollout(
            rollout.first_step, metrics["rollout/length_mean"], metrics["rollout/length_std"],
            len(completions), disagreement))
        if setup.monitor.alerts:
            setup.monitor.write(setup.run.root / "alerts.json")
        rollout.metrics = metrics
        self.log.append({"rollout": index, "step": rollout.first_step,
                         "length_mean": metrics["rollout/length_mean"],
                         "length_std": metrics["rollout/length_std"],
                         "sequences": len(completions), "disagreement": disagreement,
                         **metrics})
        return rollout


def token_kl_term(logps: torch.Tensor, ref_logps: torch.Tensor | None, mask: torch.Tensor,
                  kind: str) -> torch.Tensor | None:
    """Masked token mean of the per-token KL estimator, or ``None`` without a reference."""
    if ref_logps is None:
        return None
    return masked_mean(kl_penalty(logps, ref_logps, kind), mask)
