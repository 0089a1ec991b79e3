"""Config of the StrategyQA ask-and-draft pipeline (``prefalign pipeline configs/strategyqa.yaml``).

One section per stage. ``data`` chooses the questions: the training file is
split, content-disjoint, into the questions the supervised phases learn from
and the questions the Phase-B model drafts on for the preference pairs (so a
draft is written on a question its author never trained on, as at test time);
the dev file is the evaluation. The training sections reuse the stage configs'
own sections (``TrainConfig``, ``LossConfig``, ``PhaseConfig``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from prefalign.config.base import StrictModel
from prefalign.config.lora import LoraSettings
from prefalign.config.pipeline import PipelineConfig
from prefalign.config.preference import LossConfig, PhaseConfig, ReferenceConfig
from prefalign.config.sections import TrainConfig

STAGE_ORDER: tuple[str, ...] = ("data", "answer_sft", "reasoning_sft", "drafts", "dpo",
                                "eval", "attribution", "self_guided", "report")


class StrategyQADataConfig(StrictModel):
    """Which StrategyQA questions each phase sees."""

    path: str = Field("../shared/data/strategyqa", description="A folder with train.jsonl and "
                      "dev.jsonl, or hf:NAME (a Hub dataset with the StrategyQA fields).")
    train_split: str = Field("train", description="Split (file stem) of the training questions.")
    eval_split: str = Field("dev", description="Split of the evaluation questions.")
    sft_questions: int = Field(800, gt=0, description="Training questions of Phases A and B.")
    draft_questions: int = Field(400, gt=0, description="Other training questions, drafted "
                                 "on by the Phase-B model to make Phase C's pairs.")
    validation_questions: int = Field(32, gt=0, description="Training questions held out of "
                                      "every phase for the held-out losses.")
    eval_questions: int | None = Field(None, gt=0, description="Evaluate on the first N "
                                       "questions of the evaluation split (null: all).")
    max_facts: int = Field(1, ge=0, description="Evidence sentences in a reference rationale.")


class SFTPhaseConfig(StrictModel):
    """A supervised phase (``prefalign.stages.sft``) from the base model."""

    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters; null for a full fine-tune.")
    qlora: bool = Field(False, description="QLoRA: the frozen base in 4-bit NF4 (CUDA and "
                        "bitsandbytes only).")
    train: TrainConfig = Field(default_factory=TrainConfig)
    max_length: int = Field(192, gt=8, description="Maximum prompt + completion tokens.")


class DraftStageConfig(StrictModel):
    """The Phase-B model's greedy drafts (its sub-questions, facts and answer)."""

    max_new_tokens: int = Field(72, gt=0, description="Tokens per draft.")
    batch_size: int = Field(32, gt=0, description="Questions per generation batch.")


class DPOPhaseConfig(StrictModel):
    """Phase C: preference optimisation on draft-conditioned pairs from the Phase-B model
    (its disabled LoRA is the reference), through the schedule in ``phases``."""

    lora: LoraSettings | None = Field(default_factory=LoraSettings,
                                      description="LoRA adapters on top of the Phase-B model.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    phases: list[PhaseConfig] = Field(default_factory=list, description="The schedule: "
                                      "phases run in order, each with its epochs, loss "
                                      "settings and noisy-pair filter.")
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    max_length: int = Field(256, gt=8, description="Maximum prompt + reply tokens.")


class EvalStageConfig(StrictModel):
    """Dev accuracy of every phase and ablation, read by the yes/no verifier."""

    max_new_tokens: int = Field(72, gt=0, description="Tokens per reasoning reply.")
    answer_tokens: int = Field(3, gt=0, description="Tokens per Phase-A reply.")
    batch_size: int = Field(32, gt=0, description="Questions per generation batch.")
    question_judge: str | None = Field(
        None, description="A pairwise judge (lm:MODEL, http:URL) that compares the "
        "clarifying sub-questions of Phase C's replies with Phase B's drafts; null: none.")


class AttributionStageConfig(StrictModel):
    """Integrated gradients over input embeddings on draft-conditioned prompts."""

    examples: int = Field(12, ge=0, description="Dev questions attributed (0: none).")
    steps: int = Field(24, gt=1, description="Riemann steps of the path integral.")


class StrategyQAPipelineConfig(PipelineConfig):
    """Phase A (answer SFT) and Phase B (reasoning SFT) → the Phase-B model drafts → Phase C
    (draft-conditioned DPO) → dev accuracy with the no-draft and shuffled-draft ablations →
    attribution on the draft → the optional self-guided loop → report."""

    STAGE_ORDER: ClassVar[tuple[str, ...]] = STAGE_ORDER

    pipeline: Literal["strategyqa"] = Field("strategyqa", description="The StrategyQA "
                                            "ask-and-draft pipeline.")
    data: StrategyQADataConfig = Field(default_factory=StrategyQADataConfig)
    answer_sft: SFTPhaseConfig = Field(default_factory=SFTPhaseConfig)
    reasoning_sft: SFTPhaseConfig = Field(default_factory=SFTPhaseConfig)
    drafts: DraftStageConfig = Field(default_factory=DraftStageConfig)
    dpo: DPOPhaseConfig = Field(default_factory=DPOPhaseConfig)
    eval: EvalStageConfig = Field(default_factory=EvalStageConfig)
    attribution: AttributionStageConfig = Field(default_factory=AttributionStageConfig)
    self_guided: PhaseConfig = Field(
        default_factory=lambda: PhaseConfig(epochs=1, loss={"name": "drdpo", "beta": 0.1},
                                            filter_noisy=0.15),
        description="The self-guided loop's DPO phase (stage 'self_guided': the Phase-C "
        "model redrafts, the pairs are rebuilt, one more epoch from its weights).")
