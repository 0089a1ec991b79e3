"""The MiniGrid pipeline's stages: what each needs, what it makes, and how it runs.

Each stage builds the config of an existing stage API from the pipeline config
and the run directory (``run_sft``, ``run_preference``, ``run_reward``), or runs
the data, on-policy, evaluation and report steps. The links are fixed: data
files → SFT → the SFT policy's practice against the executor (on-policy pairs,
merged with the perturbation pairs) → DPO from the SFT adapter (whose disabled
LoRA is the SFT reference) →
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
)
from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.rundir import atomic_write_json
from prefalign.pipeline.base import Pipeline, Stage, StageContext, stage_train_config
from prefalign.pipeline.minigrid.artifacts import ARTIFACTS, POLICY_INPUTS
from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
from prefalign.pipeline.registry import register_pipeline

SUBGOAL_TOKENS = 16  # room for a completion: a subgoal is at most 7 tokens plus end of sequence


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
                     train=stage_train_config(cfg.sft.train, cfg))


def dpo_config(ctx: StageContext) -> PreferenceConfig:
    cfg = ctx.cfg
    return PreferenceConfig(name="dpo", output_dir=str(ctx.root),
                            model=ModelConfig(name=str(ctx.path("sft_model")), dtype=cfg.dtype,
                                              lora=cfg.dpo.lora),
                            data=_data(ctx, "policy_pairs", "pairs_validation",
                                       cfg.dpo.max_length),
                            train=stage_train_config(cfg.dpo.train, cfg), loss=cfg.dpo.loss,
                            reference=cfg.dpo.reference)


def rm_config(ctx: StageContext, pairs: str = "policy_pairs", name: str = "rm") -> RewardConfig:
    """The reward model on ``pairs``: the pipeline's pairs (on-policy and/or perturbation),
    or, for the baseline ``rm-perturbation``, the perturbation pairs alone."""
    cfg = ctx.cfg
    return RewardConfig(name=name, output_dir=str(ctx.root),
                        model=ModelConfig(name=str(ctx.path("dpo_model")), dtype=cfg.dtype,
                                          lora=cfg.rm.lora),
                        data=_data(ctx, pairs, "pairs_validation", cfg.rm.max_length),
                        train=stage_train_config(cfg.rm.train, cfg), tuning=cfg.rm.tuning,
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


def _run_onpolicy(ctx: StageContext) -> dict:
    from prefalign.pipeline.minigrid.onpolicy import run_on_policy

    summary = run_on_policy(ctx.cfg, ctx.path("sft_model"), ctx.path("pairs"),
                            ctx.path("held_out_contexts"), ctx.root / "onpolicy")
    return {"pairs": summary["pairs"], "per_source": summary["pairs_per_source"]}


def _run_dpo(ctx: StageContext) -> dict:
    from prefalign.stages.preference import run_preference

    stage_cfg = dpo_config(ctx)
    result = run_preference(stage_cfg, resume=_has_checkpoints(stage_cfg.run_dir))
    return {"steps": result.step, "eval": _eval_metrics(stage_cfg.run_dir)}


def _run_rl(ctx: StageContext) -> dict:
    from prefalign.pipeline.minigrid.episode_rl import run_episode_rl

    result = run_episode_rl(ctx.cfg, ctx.path("sft_model"), ctx.root / "rl")
    return {"rounds": len(result["rounds"])}


def _train_reward_model(stage_cfg: RewardConfig):
    from prefalign.stages.reward import run_reward

    run_dir = stage_cfg.run_dir
    started = _has_checkpoints(run_dir) or (run_dir / "done.json").exists() or any(
        (member / "done.json").exists() or _has_checkpoints(member)
        for member in run_dir.glob("member-*"))
    return run_reward(stage_cfg, resume=started)


def _run_rm(ctx: StageContext) -> dict:
    result = _train_reward_model(rm_config(ctx))
    baseline = _train_reward_model(rm_config(ctx, "pairs", "rm-perturbation"))
    return {"steps": result.step, "eval": result.eval_metrics,
            "perturbation_only_eval": baseline.eval_metrics}


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
              ("sft_data", "sft_validation", "pairs", "pairs_validation", "data_summary",
               "held_out_contexts"),
              ("data",), _run_data),
        Stage("sft", ("model", "dtype", "use_chat_template", "sft"),
              lambda cfg: ["sft_data", "sft_validation"], ("sft_model",), ("sft",), _run_sft),
        Stage("onpolicy", ("dtype", "use_chat_template", "seed", "onpolicy"),
              lambda cfg: ["sft_model", "pairs", "held_out_contexts"],
              ("policy_pairs", "onpolicy_summary"), ("onpolicy",), _run_onpolicy),
        Stage("dpo", ("dtype", "use_chat_template", "dpo"),
              lambda cfg: ["sft_model", "policy_pairs", "pairs_validation"], ("dpo_model",),
              ("dpo",), _run_dpo),
        Stage("rl", ("dtype", "use_chat_template", "seed", "rl"),
              lambda cfg: ["sft_model", "held_out_contexts"], ("rl_model",), ("rl",), _run_rl),
        Stage("rm", ("dtype", "use_chat_template", "rm"),
              lambda cfg: ["dpo_model", "policy_pairs", "pairs", "pairs_validation"],
              ("reward_model", "perturbation_reward_model"), ("rm", "rm-perturbation"), _run_rm),
        Stage("eval", ("model", "dtype", "use_chat_template", "seed", "data", "eval"),
              _eval_requires, ("evaluation",), ("eval",), _run_eval),
        Stage("report", ("report",), lambda cfg: ["evaluation"], ("report",),
              ("report.md", "figures"), _run_report),
    ),
    artifacts=tuple(ARTIFACTS.values()),
    description="MiniGrid subgoals: data → SFT → on-policy pairs → DPO → reward model → "
                "evaluation → report",
))
