"""The StrategyQA pipeline's stages: what each needs, what it makes, and how it runs.

data → Phase A (answer SFT) and Phase B (reasoning SFT), both from the base
model on the same questions → the Phase-B model drafts on questions it never
trained on → Phase C: DPO from the Phase-B adapter (its disabled LoRA is the
reference) through the phase schedule → evaluation of every phase and ablation →
attribution on the draft → (optionally) the self-guided loop: the Phase-C model
redrafts, the pairs are rebuilt, one more DPO epoch → report.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefalign.config import DataConfig, ModelConfig, PreferenceConfig, SFTConfig
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.rundir import atomic_write_json
from prefalign.pipeline.base import Pipeline, Stage, StageContext, stage_train_config
from prefalign.pipeline.registry import register_pipeline
from prefalign.pipeline.strategyqa.artifacts import ARTIFACTS
from prefalign.pipeline.strategyqa.config import StrategyQAPipelineConfig

REPLY_TOKENS = 96  # room for a reply: a rationale is 59 tokens on average (95%: 83)


def _data(ctx: StageContext, train: str, held_out: str, max_length: int) -> DataConfig:
    return DataConfig(train=str(ctx.path(train)), eval=str(ctx.path(held_out)),
                      max_length=max_length,
                      max_prompt_length=max(max_length - REPLY_TOKENS, max_length // 2),
                      use_chat_template=ctx.cfg.use_chat_template)


def has_progress(run_dir: Path) -> bool:
    """Whether a training run left a checkpoint or a finished phase to resume from."""
    return bool(list_checkpoints(run_dir / "checkpoints")) or any(
        list_checkpoints(phase / "checkpoints") or (phase / "done.json").exists()
        for phase in run_dir.glob("phase-*"))


def sft_config(ctx: StageContext, phase: str) -> SFTConfig:
    cfg = ctx.cfg
    section = getattr(cfg, f"{phase}_sft")
    return SFTConfig(name=f"{phase}_sft", output_dir=str(ctx.root),
                     model=ModelConfig(name=cfg.model, dtype=cfg.dtype, lora=section.lora,
                                       qlora=section.qlora),
                     data=_data(ctx, f"{phase}_train", f"{phase}_validation",
                                section.max_length),
                     train=stage_train_config(section.train, cfg))


def dpo_config(ctx: StageContext) -> PreferenceConfig:
    cfg = ctx.cfg
    return PreferenceConfig(name="dpo", output_dir=str(ctx.root),
                            model=ModelConfig(name=str(ctx.path("reasoning_model")),
                                              dtype=cfg.dtype, lora=cfg.dpo.lora),
                            data=_data(ctx, "pairs", "pairs_validation", cfg.dpo.max_length),
                            train=stage_train_config(cfg.dpo.train, cfg), loss=cfg.dpo.loss,
                            phases=cfg.dpo.phases, reference=cfg.dpo.reference)


def self_guided_config(ctx: StageContext) -> PreferenceConfig:
    """The self-guided loop's one DPO phase, from the Phase-C adapter on rebuilt pairs."""
    cfg = ctx.cfg
    return PreferenceConfig(name="self_guided", output_dir=str(ctx.root),
                            model=ModelConfig(name=str(ctx.path("dpo_model")),
                                              dtype=cfg.dtype, lora=cfg.dpo.lora),
                            data=_data(ctx, "self_guided_pairs", "self_guided_pairs_validation",
                                       cfg.dpo.max_length),
                            train=stage_train_config(cfg.dpo.train, cfg), loss=cfg.dpo.loss,
                            phases=[cfg.self_guided], reference=cfg.dpo.reference)


def _models(ctx: StageContext) -> dict[str, Path]:
    return {"answer": ctx.path("answer_model"), "reasoning": ctx.path("reasoning_model"),
            "dpo": ctx.path("dpo_model")}


def _run_data(ctx: StageContext) -> dict:
    from prefalign.pipeline.strategyqa.data import build_strategyqa_data

    summary = build_strategyqa_data(ctx.cfg.data, ctx.root / "data", ctx.cfg.seed)
    return {"counts": summary["counts"], "majority": summary["majority_baseline"]["rate"]}


def _sft_runner(phase: str):
    def run(ctx: StageContext) -> dict:
        from prefalign.stages.sft import run_sft

        stage_cfg = sft_config(ctx, phase)
        result = run_sft(stage_cfg, resume=has_progress(stage_cfg.run_dir))
        return {"steps": result.step, "eval": result.eval_metrics}
    return run


def _run_drafts(ctx: StageContext) -> dict:
    from prefalign.pipeline.strategyqa.drafts import run_drafts

    summary = run_drafts(ctx.cfg, ctx.path("reasoning_model"), ctx.root / "data",
                         ctx.root / "drafts")
    return {name: round(part["accuracy"]["rate"], 4) for name, part in summary.items()}


def _run_dpo(ctx: StageContext) -> dict:
    from prefalign.stages.preference import run_preference

    stage_cfg = dpo_config(ctx)
    result = run_preference(stage_cfg, resume=has_progress(stage_cfg.run_dir))
    path = stage_cfg.run_dir / "eval.json"
    return {"steps": result.step, "eval": json.loads(path.read_text()) if path.is_file() else {}}


def _run_eval(ctx: StageContext) -> dict:
    from prefalign.pipeline.strategyqa.evaluation import run_evaluation

    return run_evaluation(ctx.cfg, ctx.root, _models(ctx))


def _run_attribution(ctx: StageContext) -> dict:
    from prefalign.pipeline.strategyqa.attribution import run_attribution

    if ctx.cfg.attribution.examples == 0:
        atomic_write_json(ctx.path("attribution"), {"examples": [], "skipped": True})
        return {"skipped": True}
    return run_attribution(ctx.cfg, ctx.root, _models(ctx))


def _run_self_guided(ctx: StageContext) -> dict:
    from prefalign.pipeline.strategyqa.self_guided import run_self_guided

    return run_self_guided(ctx.cfg, ctx.root, ctx.path("dpo_model"),
                           lambda: self_guided_config(ctx))


def _run_report(ctx: StageContext) -> dict:
    from prefalign.pipeline.strategyqa.report import write_strategyqa_report

    return {"report": str(write_strategyqa_report(
        ctx.root, self_guided="self_guided" in ctx.cfg.stages))}


PIPELINE = register_pipeline(Pipeline(
    name="strategyqa",
    config=StrategyQAPipelineConfig,
    stages=(
        Stage("data", ("data", "seed"), lambda cfg: [],
              ("answer_train", "answer_validation", "reasoning_train", "reasoning_validation",
               "validation_questions", "draft_questions", "eval_questions", "data_summary"),
              ("data",), _run_data),
        Stage("answer_sft", ("model", "dtype", "use_chat_template", "seed", "answer_sft"),
              lambda cfg: ["answer_train", "answer_validation"], ("answer_model",),
              ("answer_sft",), _sft_runner("answer")),
        Stage("reasoning_sft", ("model", "dtype", "use_chat_template", "seed", "reasoning_sft"),
              lambda cfg: ["reasoning_train", "reasoning_validation"], ("reasoning_model",),
              ("reasoning_sft",), _sft_runner("reasoning")),
        Stage("drafts", ("dtype", "use_chat_template", "data", "drafts"),
              lambda cfg: ["reasoning_model", "draft_questions", "validation_questions",
                           "eval_questions"],
              ("pairs", "pairs_validation", "eval_drafts", "drafts_summary"), ("drafts",),
              _run_drafts),
        Stage("dpo", ("dtype", "use_chat_template", "seed", "dpo"),
              lambda cfg: ["reasoning_model", "pairs", "pairs_validation"], ("dpo_model",),
              ("dpo",), _run_dpo),
        Stage("eval", ("dtype", "use_chat_template", "seed", "eval"),
              lambda cfg: ["answer_model", "dpo_model", "eval_drafts"], ("evaluation",),
              ("eval",), _run_eval),
        Stage("attribution", ("attribution",),
              lambda cfg: ["reasoning_model", "dpo_model", "eval_drafts", "evaluation"],
              ("attribution",), ("attribution",), _run_attribution),
        Stage("self_guided", ("dtype", "use_chat_template", "seed", "data", "drafts", "dpo",
                              "eval", "self_guided"),
              lambda cfg: ["dpo_model", "draft_questions", "validation_questions",
                           "eval_drafts"],
              ("self_guided_pairs", "self_guided_pairs_validation", "self_guided_model",
               "self_guided_summary"), ("self_guided",), _run_self_guided),
        Stage("report", (), lambda cfg: ["evaluation", "attribution", "data_summary",
                                         "drafts_summary"]
              + (["self_guided_summary"] if "self_guided" in cfg.stages else []),
              ("report",), ("report.md", "figures"), _run_report),
    ),
    artifacts=tuple(ARTIFACTS.values()),
    description="StrategyQA ask-and-draft: answer SFT, reasoning SFT → drafts → "
                "draft-conditioned DPO → accuracy with ablations → attribution → report",
))
