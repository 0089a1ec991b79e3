"""Everything an online algorithm works with, built once per run.

``OnlineSetup`` bundles the algorithm's declaration, the policy (a
``PolicyModel``), its tokenizer, the generation engine, the reward scorer, the
reference, the encoded training prompts, the held-out evaluator, the
reward-hacking monitor and the training precision (``autocast``, the Engine's,
for every no-grad pass made outside a training step), so that the algorithms
only describe their own data flow and loss.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from prefalign.config.online import OnlineConfig
from prefalign.engine.rundir import RunDir
from prefalign.eval.hacking import HackingMonitor
from prefalign.eval.policy import PolicyEvaluation, PolicyEvaluator, PolicySide
from prefalign.rollout.hf_engine import TransformersEngine
from prefalign.rollout.types import GenerationEngine, SamplingSettings
from prefalign.stages.online.model import PolicyModel, unwrap
from prefalign.stages.online.process_reward import ProcessRewardScorer
from prefalign.stages.online.reference import ReferencePolicy
from prefalign.stages.online.registry import OnlineAlgorithm
from prefalign.stages.online.scoring import RewardScorer
from prefalign.stages.online.sequences import consecutive_chunks, forward_in_batches, group_size


def sampling_settings(cfg: OnlineConfig) -> SamplingSettings:
    """The rollout's sampling settings from the config."""
    r = cfg.rollout
    return SamplingSettings(r.num_samples, r.max_new_tokens, r.temperature, r.top_p, r.top_k,
                            tuple(r.stop), r.min_new_tokens)


def policy_side(model: torch.nn.Module, tokenizer, generation_batch: int,
                forward_batch: int) -> PolicySide:
    """A ``PolicyModel`` (or its distributed wrapper) as an evaluation side."""
    policy = unwrap(model)
    engine = TransformersEngine(policy.lm, tokenizer, generation_batch)
    return PolicySide(engine.generate,
                      lambda tensors: forward_in_batches(policy, tensors, forward_batch)[0],
                      policy.temperature)


def reference_side(reference: ReferencePolicy, tokenizer, generation_batch: int,
                   forward_batch: int) -> PolicySide:
    """The reference as an evaluation side (generation inside its context)."""
    engine = TransformersEngine(reference.lm, tokenizer, generation_batch)

    def generate(prompt_ids, settings, seed):
        with reference.context():
            return engine.generate(prompt_ids, settings, seed)

    def logps(tensors):
        chunks = consecutive_chunks(tensors["prompt_ids"].shape[0], forward_batch,
                                    group_size(tensors))
        return reference.logps(tensors, chunks)

    return PolicySide(generate, logps, reference.model.temperature)


@dataclass
class OnlineSetup:
    """The shared pieces of an online run (see the module docstring)."""

    cfg: OnlineConfig
    spec: OnlineAlgorithm
    run: RunDir
    policy: PolicyModel
    tokenizer: object
    engine: GenerationEngine
    scorer: RewardScorer
    reference: ReferencePolicy
    records: list[dict]
    prompt_ids: list[list[int]]
    evaluator: PolicyEvaluator | None
    monitor: HackingMonitor
    autocast: Callable[[], AbstractContextManager]
    process_scorer: ProcessRewardScorer | None = None

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def sampling(self) -> SamplingSettings:
        return sampling_settings(self.cfg)

    def completion_texts(self, completions) -> list[str]:
        """What rewards read: the response prefix followed by each completion's text."""
        return [self.cfg.rollout.response_prefix + c.text for c in completions]

    def policy_side(self, model: torch.nn.Module) -> PolicySide:
        """The current policy as an evaluation side."""
        return policy_side(model, self.tokenizer, self.cfg.eval.batch_size,
                           self.cfg.train.batch_size)

    def reference_side(self) -> PolicySide:
        """The reference as an evaluation side."""
        return reference_side(self.reference, self.tokenizer, self.cfg.eval.batch_size,
                              self.cfg.train.batch_size)

    def evaluate(self, model: torch.nn.Module,
                 step: int) -> tuple[PolicyEvaluation | None, dict[str, float]]:
        """Held-out comparison of the current policy with the reference, fed to the
        hacking monitor (held-out KL); ``(None, {})`` without held-out prompts."""
        if self.evaluator is None:
            return None, {}
        evaluation = self.evaluator.evaluate(self.policy_side(model), self.reference_side())
        metrics = dict(evaluation.metrics)
        if "kl" in metrics:
            metrics.update(self.monitor.observe_eval(step, metrics["kl"]))
            self.monitor.write(self.run.root / "alerts.json")
        return evaluation, metrics
