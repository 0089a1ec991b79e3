"""Iterative (online) DPO: sample pairs from the current policy, label them, train, repeat.

Each iteration ``i`` (Xu et al. 2023, "Some things are more CRINGE than others:
iterative preference optimization"; Guo et al. 2024, "Direct Language Model
Alignment from Online AI Feedback"):

1. the current policy samples ``G ≥ 2`` responses to each of ``P`` prompts;
2. the reward scores them; the best becomes ``chosen`` and the worst
   ``rejected`` (prompts whose responses tie are skipped); π_ref log-probs of
   both are recorded once;
3. the policy trains for ``steps_per_iteration`` optimizer steps on a buffer:
   ``current`` (this iteration's pairs), ``rolling2`` (this and the previous
   iteration's) or ``full`` (every pair so far), cycled in a seeded order.

The loss is any preference loss of ``prefalign.losses.preference`` (DPO by
default). With ``xpo_alpha > 0`` it adds XPO's exploration term
(``losses.exploration.xpo_exploration_term``; Xie et al. 2024, "Exploratory
Preference Optimization", arXiv 2405.21046)::

    L = L_DPO + α · log π_θ(ỹ | x),   ỹ ~ π_ref(·|x)

which lowers the policy's likelihood of the reference's own responses and so
pushes it to explore beyond them. Log-probs are sums over completion tokens
(per-token means with ``loss.average_log_prob``), shapes ``[B]``, at the run's
one temperature (``model.logprob_temperature``: the rollout's, for policy and
reference alike). π_ref's log-probs are computed in each step on the very
batch the policy sees (same rows, padding and precision), so with equal
weights the implicit rewards ``β·(log π − log π_ref)`` are exactly 0 at step 0.

Each iteration's labelled pairs are stored in ``buffer/iteration-<i>.json``,
so a resumed run trains on exactly the pairs it had; the held-out evaluation
after every iteration reports the win rate against the starting policy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from prefalign.config import LossConfig, StrictModel, TrainConfig
from prefalign.config.online import OnlineConfig
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.distributed import is_main_process
from prefalign.engine.metrics import read_metrics
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import ConfigError
from prefalign.eval.policy import PolicyEvaluation
from prefalign.log import say
from prefalign.losses.exploration import sequence_logps, xpo_exploration_term
from prefalign.losses.preference import preference_loss
from prefalign.rollout.batch import pack_groups
from prefalign.rollout.types import Completion
from prefalign.stages.online.registry import OnlineAlgorithm, register_online_algorithm
from prefalign.stages.online.rollouts import derived_seed, seeded_permutation
from prefalign.stages.online.sequences import forward, select_groups
from prefalign.stages.online.setup import OnlineSetup

BUFFER_WINDOWS = {"current": 1, "rolling2": 2}


class OnlineDPOSettings(StrictModel):
    """Iterative DPO: sample, label with the reward, train on a buffer, repeat."""

    iterations: int = Field(3, gt=0, description="Sample-label-train iterations.")
    steps_per_iteration: int = Field(8, gt=0, description="Optimizer steps per iteration.")
    buffer: Literal["current", "rolling2", "full"] = Field(
        "current", description="Pairs trained on: this iteration's, the last two "
        "iterations', or all so far.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Preference loss "
                             "(loss.average_log_prob: per-token mean log-probs).")
    xpo_alpha: float = Field(0.0, ge=0, description="XPO exploration weight α (0: off).")


@dataclass
class PairInputs:
    """Token log-probs of a micro-batch's replies, ``[B·F, T]``, ``F`` rows per pair in
    the order chosen, rejected (, XPO reference sample): the policy's (with gradient),
    the reference's, and the completion mask."""

    logps: torch.Tensor
    ref_logps: torch.Tensor
    mask: torch.Tensor
    fields: int


def pair_loss(x: PairInputs, cfg: OnlineConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The preference loss of the pairs (sums or, with ``loss.average_log_prob``,
    per-token means), plus XPO's exploration term when ``xpo_alpha > 0``."""
    settings = cfg.online_dpo
    average = settings.loss.average_log_prob
    pairs = x.logps.shape[0] // x.fields
    policy = sequence_logps(x.logps, x.mask, average).view(pairs, x.fields)
    reference = sequence_logps(x.ref_logps, x.mask, average).view(pairs, x.fields)
    lengths = x.mask.sum(-1).to(policy.dtype).view(pairs, x.fields)
    out = preference_loss(settings.loss.name, policy[:, 0], policy[:, 1], reference[:, 0],
                          reference[:, 1], lengths[:, 0], lengths[:, 1],
                          **settings.loss.params())
    metrics = {"rewards/accuracy": float((out.chosen_rewards > out.rejected_rewards)
                                         .float().mean()),
               "rewards/margin": float((out.chosen_rewards - out.rejected_rewards).mean()),
               "rewards/chosen": float(out.chosen_rewards.mean()),
               "rewards/rejected": float(out.rejected_rewards.mean()),
               "pairs": float(pairs)}
    loss = out.loss
    if settings.xpo_alpha > 0:
        ref_samples = sequence_logps(x.logps, x.mask).view(pairs, x.fields)[:, 2]
        loss = loss + xpo_exploration_term(ref_samples, settings.xpo_alpha)
        metrics["xpo/ref_sample_logp"] = float(ref_samples.detach().mean())
    return loss, metrics


def best_and_worst(prompt_ids: list[list[int]], groups: list[list[Completion]],
                   scores: torch.Tensor, xpo: list[list[int]] | None) -> tuple[list[dict], int]:
    """One pair per prompt: its best-scored sample as ``chosen``, its worst as ``rejected``
    (and the reference sample for XPO); prompts whose samples tie are skipped and counted."""
    pairs, ties, start = [], 0, 0
    for p, group in enumerate(groups):
        values = scores[start:start + len(group)]
        start += len(group)
        best, worst = int(values.argmax()), int(values.argmin())
        if float(values[best]) == float(values[worst]) or \
                group[best].token_ids == group[worst].token_ids:
            ties += 1
            continue
        pair = {"prompt_ids": prompt_ids[p], "chosen_ids": group[best].token_ids,
                "rejected_ids": group[worst].token_ids, "chosen_reward": float(values[best]),
                "rejected_reward": float(values[worst])}
        if xpo is not None:
            pair["xpo_ids"] = xpo[p]
        pairs.append(pair)
    return pairs, ties


@dataclass
class PairBatch:
    """Pairs (and XPO reference samples) for one micro-batch."""

    pairs: list[dict]


class OnlineDPOAlgorithm:
    """Sample → label → train on a buffer, ``online_dpo.iterations`` times."""

    def __init__(self, setup: OnlineSetup, spec: OnlineAlgorithm):
        self.setup, self.spec = setup, spec
        cfg = setup.cfg
        self.settings = cfg.online_dpo
        self.micro_per_iteration = self.settings.steps_per_iteration * cfg.train.grad_accum
        self.prompts_per_iteration = cfg.rollout.prompts_per_rollout
        self.iterations_per_pass = max(1, len(setup.records) // self.prompts_per_iteration)
        self.buffer_dir = setup.run.root / "buffer"
        self.iterations: dict[int, list[dict]] = {}
        self.last_step = 0
        self.last_evaluation: PolicyEvaluation | None = None
        self._reuse_below: int | None = None

    def num_batches(self, epoch: int) -> int:
        return self.settings.iterations * self.micro_per_iteration

    def manifest(self) -> dict:
        return {"iterations": self.settings.iterations,
                "steps_per_iteration": self.settings.steps_per_iteration}

    # -- sampling and labelling --------------------------------------------
    def _prompts(self, iteration: int) -> list[int]:
        prompt_pass, position = divmod(iteration, self.iterations_per_pass)
        order = seeded_permutation(len(self.setup.records), self.setup.cfg.train.seed,
                                   "prompts", prompt_pass)
        size = self.prompts_per_iteration
        return order[position * size:(position + 1) * size]

    def _reference_samples(self, prompt_ids: list[list[int]], seed: int) -> list[list[int]]:
        s = self.setup.sampling
        single = dataclasses.replace(s, num_samples=1)
        groups = self.setup.reference_side().generate(prompt_ids, single, seed)
        return [group[0].token_ids for group in groups]

    def _label(self, iteration: int) -> list[dict]:
        setup = self.setup
        chosen_prompts = self._prompts(iteration)
        prompt_ids = [setup.prompt_ids[i] for i in chosen_prompts]
        seed = derived_seed(setup.cfg.train.seed, "iteration", iteration)
        setup.engine.sync_weights(setup.policy.lm)
        groups = setup.engine.generate(prompt_ids, setup.sampling, seed)
        rows = [setup.records[i] for i in chosen_prompts for _ in range(setup.sampling.num_samples)]
        completions = [c for group in groups for c in group]
        scores = setup.scorer.score([r["prompt"] for r in rows],
                                    setup.completion_texts(completions), rows).total
        xpo = self._reference_samples(prompt_ids, seed + 1) \
            if self.settings.xpo_alpha > 0 else None
        pairs, ties = best_and_worst(prompt_ids, groups, scores, xpo)
        lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.float32)
        stats = {"iteration": iteration, "pairs": len(pairs), "ties": ties,
                 "reward_mean": float(scores.mean()), "length_mean": float(lengths.mean()),
                 "length_std": float(lengths.std(correction=0)), "sequences": len(completions),
                 "step": iteration * self.settings.steps_per_iteration + 1}
        setup.monitor.observe_rollout(stats["step"], stats["length_mean"], stats["length_std"],
                                      stats["sequences"])
        setup.monitor.write(setup.run.root / "alerts.json")
        if is_main_process():
            atomic_write_json(self.buffer_dir / f"iteration-{iteration}.json",
                              {"stats": stats, "pairs": pairs})
            say(self.spec.name, f"iteration {iteration}: {len(pairs)} pairs ({ties} tied "
                f"prompts skipped), mean reward {stats['reward_mean']:.3f}")
        return pairs

    def _stored(self, iteration: int) -> dict:
        return json.loads((self.buffer_dir / f"iteration-{iteration}.json").read_text())

    def _start(self, iteration: int, within: int) -> None:
        """First batch of this process: a resumed run reuses the pairs it had labelled
        (iterations before the checkpoint) and rebuilds the hacking monitor."""
        self._reuse_below = iteration + (within > 0)
        stats = [self._stored(i)["stats"] for i in range(self._reuse_below)]
        evaluations = [(int(r["step"]), float(r["eval/kl"]))
                       for r in read_metrics(self.setup.run.metrics_path) if "eval/kl" in r]
        self.setup.monitor.replay(stats, evaluations)
        self.setup.monitor.write(self.setup.run.root / "alerts.json")

    def _iteration_pairs(self, iteration: int) -> list[dict]:
        if iteration not in self.iterations:
            self.iterations[iteration] = (self._stored(iteration)["pairs"]
                                          if iteration < self._reuse_below
                                          else self._label(iteration))
        return self.iterations[iteration]

    def buffer(self, iteration: int) -> list[dict]:
        """The pairs trained on in ``iteration`` under the buffer strategy."""
        window = BUFFER_WINDOWS.get(self.settings.buffer, iteration + 1)
        first = max(0, iteration - window + 1)
        return [pair for i in range(first, iteration + 1) for pair in self._iteration_pairs(i)]

    # -- the Engine's interface ---------------------------------------------
    def batch(self, epoch: int, index: int) -> PairBatch:
        iteration, within = divmod(index, self.micro_per_iteration)
        self.last_step = index // self.setup.cfg.train.grad_accum + 1
        if self._reuse_below is None:
            self._start(iteration, within)
        pairs = self.buffer(iteration)
        if not pairs:
            return PairBatch([])
        size = self.setup.cfg.train.batch_size
        picked = []
        for k in range(within * size, (within + 1) * size):
            cycle, position = divmod(k, len(pairs))
            order = seeded_permutation(len(pairs), self.setup.cfg.train.seed, "pairs",
                                       iteration, cycle)
            picked.append(pairs[order[position]])
        return PairBatch(picked)

    def step(self, model: torch.nn.Module, batch: PairBatch) -> StepOutput:
        device = next(model.parameters()).device
        if not batch.pairs:
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return StepOutput(zero, {"pairs": 0.0})
        pairs = batch.pairs
        fields = ("chosen_ids", "rejected_ids", "xpo_ids") if self.settings.xpo_alpha > 0 \
            else ("chosen_ids", "rejected_ids")
        replies = [p[name] for p in pairs for name in fields]
        tensors = pack_groups([p["prompt_ids"] for p in pairs], replies, self.setup.pad_id)
        packed = select_groups(tensors, range(len(pairs)), device)
        logps, _ = forward(model, packed)
        ref_logps = self.setup.reference.batch_logps(packed)
        loss, metrics = self.spec.loss(PairInputs(logps, ref_logps, packed["completion_mask"],
                                                  len(fields)), self.setup.cfg)
        tokens = int(packed["prompt_mask"].sum() + packed["completion_mask"].sum())
        return StepOutput(loss, metrics, tokens=tokens)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        self.last_evaluation, metrics = self.setup.evaluate(model, self.last_step)
        if metrics:
            metrics["iteration"] = float(self.last_step // self.settings.steps_per_iteration)
        return metrics


def train_config(cfg: OnlineConfig) -> TrainConfig:
    """The Engine's loop: ``iterations × steps_per_iteration`` steps, an evaluation
    after every iteration."""
    steps = cfg.online_dpo.steps_per_iteration
    return TrainConfig.model_validate({**cfg.train.model_dump(),
                                       "max_steps": cfg.online_dpo.iterations * steps,
                                       "eval_every": steps})


def check(cfg: OnlineConfig) -> None:
    if cfg.train.max_steps is not None:
        raise ConfigError("online-dpo sets its length with online_dpo.iterations and "
                          "online_dpo.steps_per_iteration; remove train.max_steps")


ONLINE_DPO = register_online_algorithm(OnlineAlgorithm(
    name="online-dpo",
    summary="Iterative DPO: sample pairs from the policy, label with the reward, train on a "
            "buffer (current, rolling2 or full); optional XPO exploration "
            "(online_dpo.xpo_alpha).",
    loss=pair_loss, settings=OnlineDPOSettings, needs_reference=True, kl="none", min_group=2,
    group_reason="online DPO pairs two samples of a prompt", check=check,
    train_config=train_config, trainer=OnlineDPOAlgorithm))
