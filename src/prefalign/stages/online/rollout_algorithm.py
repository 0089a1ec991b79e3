"""The online loop on the shared Engine: rollouts as batches, policy updates as steps.

Design. The Engine asks for micro-batch ``i`` of epoch ``e`` and steps on it;
here an epoch is one pass over the training prompts in a seeded order, cut
into rollouts of ``P = rollout.prompts_per_rollout`` prompts. A rollout
(``N = P·G`` sequences, G samples per prompt) is made lazily by the first
``batch`` call that needs it: the current policy generates under ``no_grad``,
the rewards score, optional no-grad forwards give π_old (and values) and
π_ref log-probs, and the algorithm's ``advantages`` function (its declaration,
``registry.OnlineAlgorithm``) turns them into advantages. The rollout then
serves ``policy.epochs_per_rollout`` passes, each split into minibatches of
``train.batch_size × train.grad_accum`` sequences (one optimizer step each,
``train.batch_size`` per micro-batch), in a seeded order; the algorithm's
``loss`` function gives each micro-batch's loss. Under ``policy.reduction=token``
(DAPO's token-level mean) that loss is weighted by ``k·n_m / n_step`` (``k``
micro-batches of ``n_m`` completion tokens in a step of ``n_step``), so the step
minimises the mean over all its tokens, as with one micro-batch: the micro-batch
size trades memory for nothing else. Micro-batches hold whole
groups (``batch_size / G`` prompts with all their samples), so the forward runs
each prompt once for its ``G`` completions (``model.py``). Micro-batch ``i`` of
epoch ``e`` maps to (rollout ``i // M``, pass, minibatch) with
``M = epochs · N / batch_size``, and one optimizer step never spans two rollouts.

Exact ratios. When a rollout feeds a single update, ``log π_old = log π_θ``
detached (the weights have not moved), free and exact. Otherwise a no-grad
pass records π_old right after generation, and it is made to equal the first
training forward: the same micro-batches as the first pass (rows, padding),
the same model mode, the Engine's precision (``setup.autocast``), so the
first minibatch's ratio is exactly 1 — also under bf16, where a different
batch layout alone moves log-probs by ~1e-3. π_ref uses the same
micro-batches, so the KL at step 0 is 0 too.

KL. ``β`` is a controller (``kl.adaptive``: Ziegler et al.'s, fed with each
rollout's mean sequence KL; otherwise fixed at ``kl.coef``); each rollout
carries the β in force (``Rollout.kl_coef``).

Resume. Prompt order, minibatch order and the sampling seed of rollout ``k``
are pure functions of (seed, epoch, k), so a resumed run feeds the same
prompts in the same order. Sampled tokens are identical only when the
checkpoint falls on a rollout boundary (``train.save_every`` a multiple of
the updates per rollout) and the engine is deterministic (the transformers
engine on CPU is; CUDA kernels and vLLM may not be): a checkpoint inside a
rollout regenerates that rollout from the partly updated weights. State kept
between rollouts (β, the hacking monitor) is rebuilt from ``rollouts.jsonl``
and the logged evaluations, which the resume truncates to the rollouts
completed before the checkpoint.

Several processes. Each rank builds the rollouts its micro-batches need with
the same seed, so the ranks sample the same completions wherever generation is
deterministic (and still valid on-policy samples where it is not); only rank 0
writes the run's files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prefalign.engine.algorithm import StepOutput
from prefalign.engine.metrics import read_metrics
from prefalign.errors import ConfigError
from prefalign.eval.policy import PolicyEvaluation
from prefalign.losses.kl import AdaptiveKLController, FixedKLController, sequence_kl
from prefalign.losses.policy import masked_mean
from prefalign.rollout.batch import pack_groups
from prefalign.stages.online.registry import OnlineAlgorithm
from prefalign.stages.online.rollouts import (
    LossInputs,
    Rollout,
    RolloutLog,
    derived_seed,
    seeded_permutation,
)
from prefalign.stages.online.sequences import forward, forward_groups, group_rows, select_groups
from prefalign.stages.online.setup import OnlineSetup


@dataclass
class MicroBatch:
    """Whole groups of a rollout: its prompts and their completion rows."""

    rollout: Rollout
    prompts: list[int]
    rows: list[int]
    index: int  # within the rollout's micro-batches, all passes counted


def rollout_metrics(rollout: Rollout, scores) -> dict[str, float]:
    """Reward, length and pass-rate statistics of a scored rollout."""
    lengths = rollout.tensors["completion_lengths"].float()
    completions = rollout.completions
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
    if scores.disagreement is not None:
        metrics["reward/ensemble_std"] = float(scores.disagreement.mean())
    return metrics


class RolloutAlgorithm:
    """The Engine algorithm of every rollout-based online algorithm (see the module
    docstring); ``spec`` gives its advantages and loss."""

    def __init__(self, setup: OnlineSetup, spec: OnlineAlgorithm):
        self.setup, self.spec = setup, spec
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
        kl = cfg.kl
        self.controller = (AdaptiveKLController(kl.coef, kl.target, kl.horizon) if kl.adaptive
                           else FixedKLController(kl.coef))
        self.log = RolloutLog(setup.run.root / "rollouts.jsonl")
        self.current: Rollout | None = None
        self.last_step = 0
        self.last_evaluation: PolicyEvaluation | None = None
        self._started = False

    @property
    def needs_reference(self) -> bool:
        """Whether rollouts record π_ref log-probs."""
        kl = self.setup.cfg.kl
        return self.spec.needs_reference or (self.spec.kl != "none" and kl.coef > 0)

    @property
    def needs_old(self) -> bool:
        """Whether rollouts record π_old log-probs (and values) in a no-grad pass."""
        cfg = self.setup.cfg
        measures_kl = self.needs_reference and (self.spec.kl == "reward" or cfg.kl.adaptive)
        return cfg.updates_per_rollout > 1 or self.spec.needs_values or measures_kl

    def manifest(self) -> dict:
        return {"updates_per_rollout": self.setup.cfg.updates_per_rollout}

    def restore(self, rows: list[dict]) -> None:
        """β of a resumed run: the one the last completed rollout handed on."""
        if rows and "kl/next_coef" in rows[-1]:
            self.controller.value = float(rows[-1]["kl/next_coef"])

    # -- the Engine's interface ---------------------------------------------
    def num_batches(self, epoch: int) -> int:
        return self.rollouts_per_epoch * self.micro_per_rollout

    def prompt_order(self, epoch: int) -> list[int]:
        """The training prompts of ``epoch`` in their seeded order."""
        return seeded_permutation(len(self.setup.records), self.setup.cfg.train.seed,
                                  "prompts", epoch)

    def micro_prompts(self, rollout_index: int, pass_number: int) -> list[list[int]]:
        """The prompts (of a rollout) of each micro-batch of one pass, in order."""
        order = seeded_permutation(self.prompts_per_rollout, self.setup.cfg.train.seed,
                                   "minibatch", rollout_index, pass_number)
        size = self.prompts_per_micro
        return [order[start:start + size] for start in range(0, len(order), size)]

    def batch(self, epoch: int, index: int) -> MicroBatch:
        local, within = divmod(index, self.micro_per_rollout)
        rollout_index = epoch * self.rollouts_per_epoch + local
        accum = self.setup.cfg.train.grad_accum
        self.last_step = (rollout_index * self.micro_per_rollout + within) // accum + 1
        if not self._started:
            self._start(rollout_index)
        if self.current is None or self.current.index != rollout_index:
            self.current = self._make_rollout(epoch, local, rollout_index)
        prompts = self.prompts_of(rollout_index, within)
        return MicroBatch(self.current, prompts, group_rows(prompts, self.group), within)

    def prompts_of(self, rollout_index: int, within: int) -> list[int]:
        """The prompts of micro-batch ``within`` of a rollout (all passes counted)."""
        pass_number, minibatch = divmod(within, self.micro_per_pass)
        return self.micro_prompts(rollout_index, pass_number)[minibatch]

    def token_weight(self, micro: MicroBatch) -> float:
        """``k·n_m / n_step``: the share of the optimizer step's completion tokens in this
        micro-batch, times the ``k = train.grad_accum`` micro-batches the Engine averages."""
        accum = self.setup.cfg.train.grad_accum
        first = micro.index - micro.index % accum
        counts = []
        for index in range(first, first + accum):
            rows = group_rows(self.prompts_of(micro.rollout.index, index), self.group)
            counts.append(float(micro.rollout.mask[rows].sum()))
        return accum * counts[micro.index - first] / max(sum(counts), 1.0)

    def step(self, model: torch.nn.Module, micro: MicroBatch) -> StepOutput:
        device = next(model.parameters()).device
        rollout = micro.rollout
        batch = select_groups(rollout.tensors, micro.prompts, device)
        logps, values = forward(model, batch)
        width = logps.shape[1]

        def take(tensor: torch.Tensor | None) -> torch.Tensor | None:
            if tensor is None:
                return None
            picked = tensor[micro.rows] if tensor.dim() == 1 else tensor[micro.rows, :width]
            return picked.to(device)

        old = logps.detach() if rollout.old_logps is None else take(rollout.old_logps)
        mask = batch["completion_mask"]
        inputs = LossInputs(logps, old, mask, take(rollout.advantages), rollout.kl_coef,
                            take(rollout.ref_logps), values, take(rollout.values),
                            take(rollout.returns))
        loss, metrics = self.spec.loss(inputs, self.setup.cfg)
        if self.setup.cfg.policy.reduction == "token" and self.setup.cfg.train.grad_accum > 1:
            loss = loss * self.token_weight(micro)
        metrics["policy/entropy"] = float(-masked_mean(logps.detach(), mask))
        tokens = int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())
        return StepOutput(loss, {**rollout.metrics, **metrics}, tokens=tokens)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        if not self._started:
            self._resume_after_last_step()
        self.last_evaluation, metrics = self.setup.evaluate(model, self.last_step)
        return metrics

    def _resume_after_last_step(self) -> None:
        """An evaluation before any batch: at step 0, or in a run resumed from its final
        checkpoint, whose state (β, the hacking monitor) is rebuilt from every logged
        rollout, at the last logged training step."""
        steps = [int(r["step"]) for r in read_metrics(self.setup.run.metrics_path)
                 if "loss" in r]
        if steps:
            self.last_step = max(steps)
            self._start(math.inf)

    # -- rollouts ----------------------------------------------------------
    def _start(self, rollout_index: float) -> None:
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

    def _record_logps(self, rollout: Rollout) -> None:
        """π_old (and values) and π_ref log-probs, over the first pass's micro-batches,
        under the training precision (see "Exact ratios")."""
        chunks = self.micro_prompts(rollout.index, 0)
        with self.setup.autocast():
            if self.needs_old:
                rollout.old_logps, rollout.values = forward_groups(self.setup.policy,
                                                                   rollout.tensors, chunks)
            if self.needs_reference:
                rollout.ref_logps = self.setup.reference.logps(rollout.tensors, chunks)

    def _prepare(self, rollout: Rollout) -> dict[str, float]:
        """β, the algorithm's advantages, the rollout's KL and the next β."""
        rollout.kl_coef = self.controller.value
        metrics = self.spec.advantages(rollout, self.setup.cfg)
        if rollout.ref_logps is not None and rollout.old_logps is not None:
            kl = float(sequence_kl(rollout.old_logps, rollout.ref_logps, rollout.mask).mean())
            metrics.update({"kl/ref": kl, "kl/coef": rollout.kl_coef,
                            "kl/next_coef": self.controller.update(kl, len(rollout.rows))})
        return metrics

    def _make_rollout(self, epoch: int, local: int, index: int) -> Rollout:
        setup, cfg = self.setup, self.setup.cfg
        rows, prompt_ids, completions = self._generate(epoch, local, index)
        scores = setup.scorer.score([r["prompt"] for r in rows],
                                    setup.completion_texts(completions), rows)
        tensors = pack_groups(prompt_ids, [c.token_ids for c in completions], setup.pad_id)
        rollout = Rollout(index, index * cfg.updates_per_rollout + 1, rows, completions,
                          tensors, scores.total, self.group)
        if setup.process_scorer is not None:
            rollout.step_rewards = setup.process_scorer([r["prompt"] for r in rows],
                                                        completions)
        self._record_logps(rollout)
        metrics = rollout_metrics(rollout, scores)
        metrics.update(self._prepare(rollout))
        disagreement = metrics.get("reward/ensemble_std")
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
