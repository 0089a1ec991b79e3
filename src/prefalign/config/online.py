"""Config of the online RL stages: the sections every online algorithm shares.

An algorithm's own section (``ppo:``, ``online_dpo:``, ``reinforce_pp:``, ...) is
declared by its module in ``prefalign.stages.online.algorithms`` together with the
algorithm; ``prefalign.stages.online.registry`` builds, for each registered
algorithm, the config model that adds that section to ``OnlineConfig`` (so this
package stays free of torch and of the list of algorithms).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from prefalign.config.base import StrictModel
from prefalign.config.sections import DataConfig, ModelConfig, RunConfig, TrainConfig
from prefalign.errors import ConfigError


class RolloutConfig(StrictModel):
    """How the policy generates: engine, batch shape and sampling."""

    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="'transformers' (generate with a KV cache), 'vllm' (needs vLLM and "
        "a GPU), or 'auto': vLLM when both are present, else transformers.")
    prompts_per_rollout: int = Field(8, gt=0, description="Prompts sampled for each rollout "
                                     "(each rollout feeds one or more optimizer updates).")
    num_samples: int = Field(4, gt=0, description="Completions per prompt: the group size G "
                             "of GRPO, the K of RLOO, the candidates of online DPO.")
    max_new_tokens: int = Field(64, gt=0, description="Longest completion, in tokens.")
    min_new_tokens: int = Field(0, ge=0, description="Shortest completion, in tokens: the "
                                "end-of-sequence token is barred before it (stop strings "
                                "still end a completion). At most max_new_tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature τ. Every "
                               "log-prob of the run is taken at it, log softmax(z/τ): the "
                               "policy's, the old policy's, the reference's, the KL in "
                               "training and in `eval policy`.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (1: off).")
    top_k: int = Field(0, ge=0, description="Sample among the k likeliest tokens (0: off).")
    stop: list[str] = Field(default_factory=list, description="Stop strings: a completion "
                            "ends with the first one it writes (kept in the completion).")
    response_prefix: str = Field("", description="Text that every response starts with, "
                                 "appended to the prompt; rewards see prefix + completion.")
    generation_batch_size: int = Field(64, gt=0, description="Prompts per generate call.")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, lt=1, description="Share of GPU "
                                               "memory the vLLM engine may take.")

    @model_validator(mode="after")
    def _min_within_max(self) -> RolloutConfig:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens "
                             f"({self.max_new_tokens})")
        return self


class RewardSpec(StrictModel):
    """One term of the reward: a registered reward function with a weight."""

    name: str = Field(..., description="A registered reward: rm, countdown, minigrid, gsm8k, "
                      "arithmetic, length_gate, hollow_opener, ...")
    weight: float = Field(1.0, description="Weight w of this term in Σ w·r.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the "
                                   "reward's factory (e.g. path= for rm).")
    label: str | None = Field(None, description="Name of the term in metrics (default: name).")
    squash: bool | None = Field(None, description="Pass the term through a sigmoid (default: "
                                "only for unbounded rewards such as reward models).")

    def spec(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class KLSettings(StrictModel):
    """The KL anchor to the reference policy."""

    coef: float = Field(0.04, ge=0, description="β, the weight of the KL to the reference "
                        "(initial β when adaptive). An algorithm puts it in the loss "
                        "(grpo: + β·k(log π − log π_ref), token-reduced like the policy loss; "
                        "agent-rl: the same over the policy's turns) "
                        "or in the reward (rloo: − β·Σ_t (log π_old − log π_ref) per "
                        "sequence; ppo, reinforce-pp: − β·(log π_old − log π_ref) per token); "
                        "each command's --help says which.")
    estimator: Literal["k1", "k2", "k3"] = Field("k3", description="Per-token KL estimator "
                                                  "of a KL term in the loss (grpo, agent-rl); a KL in "
                                                  "the reward always uses k1.")
    adaptive: bool = Field(False, description="Adapt β after each rollout towards kl.target "
                           "(Ziegler et al. 2019), from the rollout's mean sequence KL.")
    target: float = Field(1.0, gt=0, description="Adaptive target of the per-sequence KL (nats).")
    horizon: int = Field(2000, gt=0, description="Adaptive controller horizon, in samples.")


class PolicyLossSettings(StrictModel):
    """The clipped policy objective of the policy-gradient algorithms (grpo, rloo, ppo, ...)."""

    clip_eps: float = Field(0.2, gt=0, lt=1, description="Ratio clip ε.")
    clip_eps_high: float | None = Field(None, gt=0, description="Upper clip (DAPO's "
                                        "clip-higher); default ε.")
    reduction: Literal["token", "sequence", "constant"] = Field(
        "token", description="How the per-token policy loss (and a KL term in the loss) "
        "becomes a scalar: 'token' averages over all tokens, 'sequence' per sequence then "
        "over sequences, 'constant' sums and divides by batch size × rollout.max_new_tokens "
        "(Dr. GRPO).")
    epochs_per_rollout: int = Field(1, gt=0, description="Passes over each rollout (PPO epochs).")
    normalize_std: bool = Field(True, description="GRPO: divide by the group std; false is "
                                "Dr. GRPO's unnormalised advantage.")
    process_reward: str | None = Field(
        None, description="GRPO only: a step reward model (prefalign rm objective=process) "
        "whose per-step scores give dense per-token advantages (DeepSeekMath's process "
        "supervision) instead of the outcome reward's; the rewards are still scored and "
        "logged.")


class HackingSettings(StrictModel):
    """Reward-hacking signals computed during training."""

    warmup_rollouts: int = Field(5, gt=0, description="Rollouts forming the length baseline.")
    length_z: float = Field(2.5, gt=0, description="Alert when the mean response length is "
                            "this many warm-up standard deviations above the warm-up mean.")
    kl_rising_evals: int = Field(3, gt=0, description="Alert when the held-out KL rose over "
                                 "this many consecutive evaluations.")
    disagreement_z: float = Field(2.5, gt=0, description="Alert when ensemble disagreement "
                                  "is this many warm-up standard deviations above its mean.")


class OnlineEvalSettings(StrictModel):
    """Held-out evaluation of the policy against the reference."""

    prompts: int = Field(64, gt=0, description="Held-out prompts evaluated.")
    max_new_tokens: int | None = Field(None, gt=0, description="Default: rollout.max_new_tokens.")
    temperature: float = Field(0.0, ge=0, description="0: greedy responses.")
    kl_samples: int = Field(1, ge=0, description="Sampled responses per prompt for the KL "
                            "estimate (0: skip KL).")
    judge: list[RewardSpec] = Field(default_factory=list, description="Reward that judges the "
                                    "win rate against the reference (default: the training "
                                    "reward).")
    batch_size: int = Field(32, gt=0, description="Prompts per generation batch.")


class ReferenceSettings(StrictModel):
    """Where the reference policy π_ref comes from."""

    source: Literal["auto", "adapter_disabled", "separate"] = Field(
        "auto", description="'adapter_disabled': the policy with LoRA off; 'separate': a frozen "
        "copy of reference.model; 'auto': the former under LoRA.")
    model: str | None = Field(None, description="Reference for source=separate (default: the "
                              "policy's starting model).")


class OnlineConfig(RunConfig):
    """Online RL: the policy generates, rewards score, the policy updates."""

    algorithm: str = Field("grpo", description="A registered online algorithm (set by the "
                           "command: prefalign grpo, rloo, ppo, reinforce-pp, online-dpo, ...).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    rewards: list[RewardSpec] = Field(..., min_length=1, description="Reward terms, summed "
                                      "with their weights.")
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
    kl: KLSettings = Field(default_factory=KLSettings)
    policy: PolicyLossSettings = Field(default_factory=PolicyLossSettings)
    hacking: HackingSettings = Field(default_factory=HackingSettings)
    eval: OnlineEvalSettings = Field(default_factory=OnlineEvalSettings)

    def check_group(self, minimum: int, reason: str) -> None:
        """``rollout.num_samples >= minimum``, or a ``ConfigError`` giving ``reason``."""
        group = self.rollout.num_samples
        if group < minimum:
            raise ConfigError(f"rollout.num_samples must be at least {minimum} for "
                              f"{self.algorithm} ({reason}); got {group}")

    def check_minibatches(self) -> None:
        """A rollout splits into whole optimizer minibatches of whole groups."""
        group = self.rollout.num_samples
        if self.train.batch_size % group:
            raise ConfigError(f"train.batch_size={self.train.batch_size} must be a multiple of "
                              f"rollout.num_samples={group}: a micro-batch holds whole groups "
                              f"(each prompt with all its samples)")
        sequences = self.sequences_per_rollout
        minibatch = self.train.batch_size * self.train.grad_accum
        if sequences % minibatch:
            raise ConfigError(
                f"a rollout of {sequences} sequences (rollout.prompts_per_rollout × "
                f"rollout.num_samples) must split into whole optimizer minibatches of "
                f"train.batch_size × train.grad_accum = {minibatch} sequences")

    @property
    def sequences_per_rollout(self) -> int:
        return self.rollout.prompts_per_rollout * self.rollout.num_samples

    @property
    def updates_per_rollout(self) -> int:
        """Optimizer steps taken on each rollout (epochs × minibatches)."""
        minibatch = self.train.batch_size * self.train.grad_accum
        return self.policy.epochs_per_rollout * (self.sequences_per_rollout // minibatch)
