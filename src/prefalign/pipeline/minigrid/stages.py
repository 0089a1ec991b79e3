"""The MiniGrid pipeline's stages: what each needs, what it makes, and how it runs.

Each stage builds the config of an existing stage API from the pipeline config
and the run directory (``run_sft``, ``run_preference``, ``run_reward``), or runs
the data, evaluation and report steps. The links are fixed: data files →
SFT → DPO from the SFT adapter (whose disabled LoRA is the SFT reference) →
reward model on the frozen DPO model → evaluation of every policy → report.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefalign.config import (
    DataConfig,
    ModelConfig,
    PreferenceConfig,
    RewardConfig,
    SFTConfig,
    TrainConfig,
)
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.rundir import atomic_write_json
from prefalign.pipeline.base import Pipeline, Stage, StageContext
from prefalign.pipeline.minigrid.artifacts import ARTIFACTS, POLICY_INPUTS
from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
from prefalign.pipeline.registry import register_pipeline

SUBGOAL_TOKENS = 16  # room for a completion: a subgoal is at most 7 tokens plus end of sequence


def _train(section: TrainConfig, cfg: MinigridPipelineConfig) -> TrainConfig:
    if cfg.threads is None or section.threads is not None:
        return section
    return section.model_copy(update={"threads": cfg.threads})


def _data(ctx: StageContext, train: str, held_out: str, max_length: int) -> DataConfig:
    return DataConfig(train=str(ctx.path(train)), eval=str(ctx.path(held_out)),
                      max_length=max_length, max_prompt_length=max_length - SUBGOAL_TOKENS,
                      use_chat_template=ctx.cfg.use_chat_template)


def _has_checkpoints(run_dir: Path) -> bool:
    return bool(list_checkpoints(run_dir / "checkpoints"))


def _eval_metrics(run_dir: Path) -> dict:
    path = run_dir / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def sft_config(ctx: StageContext) -> SFTConfig:
    cfg = ctx.cfg
    return SFTConfig(name="sft", output_dir=str(ctx.root),
                     model=ModelConfig(name=cfg.model, dtype=cfg.dtype, lora=cfg.sft.lora),
                     data=_data(ctx, "sft_data", "sft_validation", cfg.sft.max_length),
                     train=_train(cfg.sft.train, cfg))


def dpo_config(ctx: StageContext) -> PreferenceConfig:
    cfg = ctx.cfg
    return PreferenceConfig(name="dpo", output_dir=str(ctx.root),
                            model=ModelConfig(name=str(ctx.path("sft_model")), dtype=cfg.dtype,
                                              lora=cfg.dpo.lora),
                            data=_data(ctx, "pairs", "pairs_validation", cfg.dpo.max_length),
                            train=_train(cfg.dpo.train, cfg), loss=cfg.dpo.loss,
                            reference=cfg.dpo.reference)


def rm_config(ctx: StageContext) -> RewardConfig:
    cfg = ctx.cfg
    return RewardConfig(name="rm", output_dir=str(ctx.root),
                        model=ModelConfig(name=str(ctx.path("dpo_model")), dtype=cfg.dtype,
                                          lora=cfg.rm.lora),
                        data=_data(ctx, "pairs", "pairs_validation", cfg.rm.max_length),
                        train=_train(cfg.rm.train, cfg), tuning=cfg.rm.tuning,
                        objective="pairwise", loss=cfg.rm.loss, ensemble=cfg.rm.ensemble,
                        feature_batch_size=cfg.rm.feature_batch_size)


def _run_data(ctx: StageContext) -> dict:
    from prefalign.pipeline.minigrid.data import build_minigrid_data

    summary = build_minigrid_data(ctx.cfg.data, ctx.root / "data", ctx.cfg.seed)
    atomic_write_json(ctx.path("data_summary"), summary)
    return {"counts": summary["counts"]}


def _run_sft(ctx: StageContext) -> dict:
    from prefalign.stages.sft import run_sft

    stage_cfg = sft_config(ctx)
    result = run_sft(stage_cfg, resume=_has_checkpoints(stage_cfg.run_dir))
    return {"steps": result.step, "eval": result.eval_metrics}


def _run_dpo(ctx: StageContext) -> dict:
    from prefalign.stages.preference import run_preference

    stage_cfg = dpo_config(ctx)
    result = run_preference(stage_cfg, resume=_has_checkpoints(stage_cfg.run_dir))
    return {"steps": result.step, "eval": _eval_metrics(stage_cfg.run_dir)}


def _run_rm(ctx: StageContext) -> dict:
    from prefalign.stages.reward import run_reward

    stage_cfg = rm_config(ctx)
    run_dir = stage_cfg.run_dir
    started = _has_checkpoints(run_dir) or (run_dir / "done.json").exists() or any(
        (member / "done.json").exists() or _has_checkpoints(member)
        for member in run_dir.glob("member-*"))
    result = run_reward(stage_cfg, resume=started)
    return {"steps": result.step, "eval": result.eval_metrics}


def _run_eval(ctx: StageContext) -> dict:
    from prefalign.pipeline.minigrid.evaluation import run_evaluation

    return run_evaluation(ctx.cfg, ctx.root)


def _run_report(ctx: StageContext) -> dict:
    from prefalign.pipeline.minigrid.report import write_pipeline_report

    path = write_pipeline_report(ctx.root, ctx.cfg.report.title)
    return {"report": str(path)}


def _eval_requires(cfg: MinigridPipelineConfig) -> list[str]:
    needed = [name for policy in cfg.eval.policies for name in POLICY_INPUTS[policy]]
    return list(dict.fromkeys(needed))


PIPELINE = register_pipeline(Pipeline(
    name="minigrid",
    config=MinigridPipelineConfig,
    stages=(
        Stage("data", ("data", "seed"), lambda cfg: [],
              ("sft_data", "sft_validation", "pairs", "pairs_validation", "data_summary"),
              ("data",), _run_data),
        Stage("sft", ("model", "dtype", "use_chat_template", "sft"),
              lambda cfg: ["sft_data", "sft_validation"], ("sft_model",), ("sft",), _run_sft),
        Stage("dpo", ("dtype", "use_chat_template", "dpo"),
              lambda cfg: ["sft_model", "pairs", "pairs_validation"], ("dpo_model",),
              ("dpo",), _run_dpo),
        Stage("rm", ("dtype", "use_chat_template", "rm"),
              lambda cfg: ["dpo_model", "pairs", "pairs_validation"], ("reward_model",),
              ("rm",), _run_rm),
        Stage("eval", ("model", "dtype", "use_chat_template", "seed", "data", "eval"),
              _eval_requires, ("evaluation",), ("eval",), _run_eval),
        Stage("report", ("report",), lambda cfg: ["evaluation"], ("report",),
              ("report.md", "figures"), _run_report),
    ),
    artifacts=tuple(ARTIFACTS.values()),
    description="MiniGrid subgoals: data → SFT → DPO → reward model → evaluation → report",
))
