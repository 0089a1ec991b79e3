"""Config of the MiniGrid pipeline (``prefalign pipeline configs/minigrid.yaml``).

One section per stage. The data stage's settings choose the MiniGrid/BabyAI
environments and seed splits; the training sections reuse the stage configs'
own sections (``TrainConfig``, ``LossConfig``, ...), and the pipeline fills in
what links the stages: data files, the model each stage starts from, run
directories. Environment ids are checked against the task's list when the
config is validated, before anything runs.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from prefalign.config.base import StrictModel
from prefalign.config.lora import LoraSettings
from prefalign.config.pipeline import PipelineConfig
from prefalign.config.preference import LossConfig, ReferenceConfig
from prefalign.config.reward import EnsembleConfig, RewardLossConfig
from prefalign.config.sections import TrainConfig

# The stages in the order they run; each one's output is a later one's input.
STAGE_ORDER: tuple[str, ...] = ("data", "sft", "onpolicy", "dpo", "rl", "rm", "eval", "report")
POLICIES: tuple[str, ...] = ("base", "sft", "dpo", "dpo_best_of_n", "rl")
DEFAULT_ENVIRONMENTS = ["MiniGrid-DoorKey-8x8-v0", "MiniGrid-Unlock-v0",
                        "MiniGrid-UnlockPickup-v0", "BabyAI-GoToLocalS8N4-v0"]


class MinigridDataConfig(StrictModel):
    """Expert traces and perturbed preference pairs from seeded MiniGrid episodes."""

    environments: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVIRONMENTS),
                                    min_length=1, description="Environment ids (see "
                                    "prefalign.tasks.minigrid.ENVIRONMENTS).")
    test_environments: list[str] | None = Field(
        None, description="Environment ids of the held-out evaluation; null: the training "
        "environments (at unseen seeds). Listing others (larger sizes, more doors, new "
        "compositions) measures generalisation.")
    train_seeds: int = Field(100, gt=0, description="Training episodes per environment: "
                             "the first demo_episodes have expert demonstrations, all of "
                             "them serve for on-policy practice against the executor.")
    demo_episodes: int | None = Field(None, gt=0, description="Expert-demonstrated "
                                      "episodes per environment (SFT data and perturbation "
                                      "pairs); null: all train_seeds.")
    held_out_compositions: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of mission compositions (door colours, the "
        "object named, the order of a sequence) held out of training; the test takes only "
        "episodes of held-out compositions. 0: test at unseen seeds of any composition.")
    demo_noise: float = Field(0.0, ge=0.0, lt=1.0, description="Share of demonstrated "
                              "subgoals replaced by a seeded perturbation of the expert's "
                              "(an expert that errs this fraction of the time).")
    validation_seeds: int = Field(4, gt=0, description="Validation episodes per environment "
                                  "(held-out loss of SFT, DPO and the reward model).")
    test_seeds: int = Field(30, gt=0, description="Held-out test episodes per environment "
                            "(the evaluation).")
    seed_start: int = Field(0, ge=0, description="First training seed; validation and test "
                            "seeds follow in disjoint ranges.")
    perturbations: list[Literal["wrong_object", "wrong_order", "omission", "wrong_action"]] = Field(
        default_factory=lambda: ["wrong_object", "wrong_order", "omission", "wrong_action"],
        min_length=1,
        description="Perturbation types that make the rejected subgoals of preference pairs.")
    exclude_test_states: bool = Field(True, description="Drop training states whose text "
                                      "also occurs in a test episode's expert trace (small "
                                      "rooms repeat layouts across seeds). Validation states "
                                      "are always excluded from training.")
    max_sft_examples: int | None = Field(None, gt=0, description="Keep at most this many "
                                         "SFT examples, a seeded sample.")
    max_pairs: int | None = Field(None, gt=0, description="Keep at most this many training "
                                  "pairs, a seeded sample.")
    pair_sampling: Literal["uniform", "per_environment"] = Field(
        "uniform", description="How max_pairs are drawn: 'uniform' over all candidate pairs "
        "(environments with longer episodes get more), 'per_environment' an equal share per "
        "environment (one with fewer candidates passes its unused share on).")
    prompt_style: Literal["compact", "full"] = Field(
        "compact", description="'full': the domain's whole instruction before the state; "
        "'compact': a one-line grammar reminder (about half the tokens).")

    @field_validator("environments", "test_environments")
    @classmethod
    def _known_environments(cls, value: list[str] | None) -> list[str] | None:
        from prefalign.tasks.minigrid import ENVIRONMENTS

        if value is None:
            return value
        if not value:
            raise ValueError("list at least one environment")
        for env_id in value:
            if env_id not in ENVIRONMENTS:
                raise ValueError(f"unknown environment {env_id!r}; supported: "
                                 f"{', '.join(ENVIRONMENTS)}")
        if len(set(value)) != len(value):
            raise ValueError("an environment is listed twice")
        return value


class SFTStageConfig(StrictModel):
    """Supervised fine-tuning on the expert subgoals (``prefalign.stages.sft``)."""

    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters; null for a full fine-tune.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    max_length: int = Field(192, gt=8, description="Maximum prompt + completion tokens.")


class OnPolicyStageConfig(StrictModel):
    """The SFT policy practises the training episodes against the executor; its own
    proposals, judged by execution, become preference pairs."""

    sources: list[Literal["on_policy", "perturbation"]] = Field(
        default_factory=lambda: ["on_policy", "perturbation"], min_length=1,
        description="Pairs for DPO and the reward model: 'on_policy' (a proposal of the "
        "SFT policy that passed the execution contract against one that failed, same "
        "state) and/or 'perturbation' (the expert's subgoal against a perturbed one, "
        "demonstrated episodes only).")
    samples: int = Field(4, ge=2, description="Proposals sampled per state.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    max_pairs_per_state: int = Field(2, gt=0, description="Failed proposals paired per state.")
    max_pairs: int | None = Field(None, gt=0, description="Keep at most this many on-policy "
                                  "pairs, a seeded sample (perturbation pairs are capped by "
                                  "data.max_pairs).")
    step_budget: int = Field(8, gt=0, description="Subgoals a practice episode may spend.")
    max_new_tokens: int = Field(12, gt=0, description="Generated tokens per proposal.")
    batch_size: int = Field(16, gt=0, description="States per sampling batch.")


class DPOStageConfig(StrictModel):
    """Preference optimisation from the SFT weights (``prefalign.stages.preference``);
    the reference is the SFT model (a fresh LoRA on top, disabled)."""

    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters on top of the SFT model.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    max_length: int = Field(192, gt=8, description="Maximum prompt + completion tokens.")


class EpisodeRLStageConfig(StrictModel):
    """Online RL against the executor over whole episodes (multi-turn GRPO) from the SFT
    weights; see ``prefalign.pipeline.minigrid.episode_rl``."""

    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters on top of the SFT model.")
    rounds: int = Field(4, ge=0, description="Rounds of rollouts and updates (0: no RL).")
    seeds_per_round: int = Field(32, gt=0, description="Episode starts (environment, seed) "
                                 "per round, cycling over the training episodes.")
    episodes_per_seed: int = Field(4, ge=2, description="Episodes sampled per start: the "
                                   "group whose returns give the baseline.")
    step_budget: int = Field(8, gt=0, description="Subgoals an episode may spend.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    mission_bonus: float = Field(1.0, ge=0, description="Return added when the mission "
                                 "is accomplished (each passing subgoal gives 1).")
    kl_coef: float = Field(0.05, ge=0, description="β of the k3 KL to the SFT reference.")
    clip_eps: float = Field(0.2, gt=0, description="PPO ratio clip ε.")
    lr: float = Field(1.0e-4, gt=0, description="AdamW learning rate of the adapters.")
    batch_size: int = Field(16, gt=0, description="Sequences (turns) per optimizer step.")
    epochs_per_round: int = Field(2, gt=0, description="Passes over a round's sequences.")
    generation_batch_size: int = Field(32, gt=0, description="States per sampling batch.")
    max_new_tokens: int = Field(12, gt=0, description="Generated tokens per subgoal.")


class RMStageConfig(StrictModel):
    """Reward model on the DPO policy's backbone (``prefalign.stages.reward``)."""

    tuning: Literal["frozen", "lora", "full"] = Field(
        "frozen", description="'frozen': a linear head on cached last-token features of the "
        "DPO model; 'lora'/'full': train the backbone too.")
    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters (tuning=lora only).")
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: RewardLossConfig = Field(default_factory=RewardLossConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    feature_batch_size: int = Field(32, gt=0, description="Sequences per forward pass when "
                                    "computing frozen features.")
    max_length: int = Field(192, gt=8, description="Maximum prompt + response tokens.")


class EvalStageConfig(StrictModel):
    """Execution-based evaluation on the held-out test episodes."""

    policies: list[Literal["base", "sft", "dpo", "dpo_best_of_n", "rl"]] = Field(
        default_factory=lambda: list(POLICIES), min_length=1,
        description="Policies to evaluate: the base model, SFT, DPO, DPO with best-of-n "
        "reranking by the reward model, and the multi-turn GRPO policy.")
    step_budget: int = Field(8, gt=0, description="Subgoals a closed-loop episode may spend.")
    max_new_tokens: int = Field(12, gt=0, description="Generated tokens per subgoal.")
    batch_size: int = Field(32, gt=0, description="Prompts per generation batch.")
    best_of_n: int = Field(4, gt=1, description="Samples per state for best-of-n.")
    best_of_n_guard: Literal["grounded", "grammar", "none"] = Field(
        "grounded", description="'grounded': the reward model ranks only candidates that "
        "parse and refer to the state's listed objects (no open door opened, no drop with "
        "empty hands); 'grammar': those that parse; 'none': all. None qualifies: the first "
        "candidate.")
    best_of_n_greedy: bool = Field(
        True, description="The greedy completion is one of the n candidates (the other "
        "n − 1 are sampled), so the reward model reranks around the greedy policy's choice.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for best-of-n.")


class ReportStageConfig(StrictModel):
    """The markdown report and its figures."""

    title: str = Field("MiniGrid subgoal alignment: SFT, DPO on on-policy pairs, multi-turn "
                       "GRPO, best-of-n",
                       description="Heading of report.md.")


class MinigridPipelineConfig(PipelineConfig):
    """SFT → on-policy pairs → DPO; SFT → multi-turn GRPO; reward model → execution-based
    evaluation → report, in one run directory."""

    STAGE_ORDER: ClassVar[tuple[str, ...]] = STAGE_ORDER

    pipeline: Literal["minigrid"] = Field("minigrid", description="The MiniGrid pipeline.")
    data: MinigridDataConfig = Field(default_factory=MinigridDataConfig)
    sft: SFTStageConfig = Field(default_factory=SFTStageConfig)
    onpolicy: OnPolicyStageConfig = Field(default_factory=OnPolicyStageConfig)
    dpo: DPOStageConfig = Field(default_factory=DPOStageConfig)
    rl: EpisodeRLStageConfig = Field(default_factory=EpisodeRLStageConfig)
    rm: RMStageConfig = Field(default_factory=RMStageConfig)
    eval: EvalStageConfig = Field(default_factory=EvalStageConfig)
    report: ReportStageConfig = Field(default_factory=ReportStageConfig)
