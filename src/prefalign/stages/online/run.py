"""Running an online stage end to end: check, load, train, evaluate, report.

Everything that bad input can break is checked before a model is loaded: the
config (group sizes, minibatch shapes), the reward names and parameters, the
prompt sets, and that every prompt row has the fields the rewards read.

A run directory gets, besides the Engine's files: ``rollouts.jsonl`` (one row
per rollout), ``alerts.json`` (reward-hacking alerts), ``eval.json``,
``policy_eval.json`` and ``examples.md`` (the final held-out comparison with
the reference), and ``figures/`` (reward histogram and training curves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch

from prefalign.config.online import OnlineConfig
from prefalign.config.sections import TrainConfig
from prefalign.engine.loop import Engine, TrainResult, seed_everything
from prefalign.engine.metrics import MetricsLogger
from prefalign.engine.rundir import RunDir, atomic_write_json
from prefalign.errors import ConfigError
from prefalign.eval.hacking import HackingMonitor
from prefalign.eval.policy import EvalSettings, PolicyEvaluator, write_policy_report
from prefalign.models.load import resolve_model_source
from prefalign.models.save import save_model
from prefalign.rewards import available_rewards
from prefalign.rollout.batch import encode_prompts
from prefalign.rollout.engines import build_engine
from prefalign.stages.common import fingerprints, load_policy, prepare_run
from prefalign.stages.online.curves import plot_curves
from prefalign.stages.online.grpo import GRPOAlgorithm, RLOOAlgorithm
from prefalign.stages.online.model import PolicyModel, unwrap
from prefalign.stages.online.online_dpo import OnlineDPOAlgorithm
from prefalign.stages.online.ppo import PPOAlgorithm
from prefalign.stages.online.prompts import check_reward_fields, load_prompt_sets
from prefalign.stages.online.reference import build_reference
from prefalign.stages.online.scoring import RewardScorer, prompt_text
from prefalign.stages.online.setup import OnlineSetup

ALGORITHMS = {"grpo": GRPOAlgorithm, "rloo": RLOOAlgorithm, "ppo": PPOAlgorithm,
              "online-dpo": OnlineDPOAlgorithm}


def check_reward_names(cfg: OnlineConfig) -> None:
    """Refuse an unknown reward name (training or judge) with the list of valid ones."""
    valid = available_rewards()
    for spec in [*cfg.rewards, *cfg.eval.judge]:
        if spec.name not in valid:
            raise ConfigError(f"unknown reward '{spec.name}'; valid rewards: "
                              f"{', '.join(valid)}")


def validate_inputs(cfg: OnlineConfig):
    """Rewards, judge and prompt sets, checked against each other; no model is loaded
    (except a reward model the rewards name)."""
    cfg.check()
    check_reward_names(cfg)
    train, held_out = load_prompt_sets(cfg.data, cfg.train.seed)
    held_out = held_out[: cfg.eval.prompts]
    scorer = RewardScorer(cfg.rewards)
    judge = RewardScorer(cfg.eval.judge) if cfg.eval.judge else None
    check_reward_fields(scorer.required_fields, {cfg.data.train: train,
                                                 cfg.data.eval or "held-out split": held_out})
    if judge is not None:
        check_reward_fields(judge.required_fields, {cfg.data.eval or "held-out split": held_out})
    return train, held_out, scorer, judge


def engine_train_config(cfg: OnlineConfig) -> TrainConfig:
    """The Engine's loop settings; online DPO's length comes from its iterations."""
    if cfg.algorithm != "online-dpo":
        return cfg.train
    steps = cfg.online_dpo.steps_per_iteration
    return TrainConfig.model_validate({**cfg.train.model_dump(),
                                       "max_steps": cfg.online_dpo.iterations * steps,
                                       "eval_every": steps})


def _evaluator(cfg: OnlineConfig, held_out: list[dict], tokenizer, scorer, judge,
               pad_id: int) -> PolicyEvaluator | None:
    if not held_out:
        return None
    settings = EvalSettings(max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
                            temperature=cfg.eval.temperature, stop=tuple(cfg.rollout.stop),
                            response_prefix=cfg.rollout.response_prefix,
                            kl_samples=cfg.eval.kl_samples,
                            kl_temperature=cfg.rollout.temperature, seed=cfg.train.seed)
    ids = encode_prompts(held_out, tokenizer, use_chat_template=cfg.data.use_chat_template,
                         max_prompt_length=cfg.data.max_prompt_length,
                         truncation=cfg.data.truncation,
                         response_prefix=cfg.rollout.response_prefix)
    return PolicyEvaluator(held_out, ids, scorer, judge, settings, pad_id, prompt_text)


def build_setup(cfg: OnlineConfig, run: RunDir, train: list[dict], held_out: list[dict],
                scorer: RewardScorer, judge: RewardScorer | None) -> OnlineSetup:
    """Load the policy and build the shared pieces of the run."""
    lm, tokenizer = load_policy(cfg.model)
    temperature = 1.0 if cfg.algorithm == "online-dpo" else cfg.rollout.temperature
    policy = PolicyModel(lm, temperature, value_head=cfg.algorithm == "ppo")
    reference = build_reference(cfg, policy)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    prompt_ids = encode_prompts(train, tokenizer, use_chat_template=cfg.data.use_chat_template,
                                max_prompt_length=cfg.data.max_prompt_length,
                                truncation=cfg.data.truncation,
                                response_prefix=cfg.rollout.response_prefix)
    engine = build_engine(cfg.rollout.engine, lm, tokenizer,
                          model_source=resolve_model_source(cfg.model.name),
                          batch_size=cfg.rollout.generation_batch_size,
                          gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
                          seed=cfg.train.seed)
    h = cfg.hacking
    monitor = HackingMonitor(h.warmup_rollouts, h.length_z, h.kl_rising_evals, h.disagreement_z)
    return OnlineSetup(cfg, run, policy, tokenizer, engine, scorer, reference, train,
                       prompt_ids, _evaluator(cfg, held_out, tokenizer, scorer, judge, pad_id),
                       monitor)


def _initial_evaluation(algorithm, setup: OnlineSetup) -> None:
    """Held-out metrics of the starting policy, logged at step 0 (the Engine does this
    itself when it evaluates periodically)."""
    with torch.no_grad():
        values = algorithm.evaluate(setup.policy)
    if values:
        MetricsLogger(setup.run.metrics_path).log(0, {f"eval/{k}": v for k, v in values.items()})
        print("online: before training: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()
                                                      if not k.startswith("hacking/")))


def run_online(cfg: OnlineConfig, resume: bool = False,
               on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` with ``cfg.algorithm``; the policy lands in ``runs/<name>/final``."""
    train, held_out, scorer, judge = validate_inputs(cfg)
    run = prepare_run(cfg, resume)
    seed_everything(cfg.train.seed)
    setup = build_setup(cfg, run, train, held_out, scorer, judge)
    run.write_manifest(stage=cfg.algorithm, seed=cfg.train.seed, model_source=cfg.model.name,
                       datasets=fingerprints(train=train, eval=held_out),
                       extra={"train_prompts": len(train), "eval_prompts": len(held_out),
                              "engine": setup.engine.name, "reference": setup.reference.kind,
                              "updates_per_rollout": cfg.updates_per_rollout
                              if cfg.algorithm != "online-dpo" else None})
    algorithm = ALGORITHMS[cfg.algorithm](setup)
    train_cfg = engine_train_config(cfg)
    if not resume and not train_cfg.eval_every:
        run.metrics_path.unlink(missing_ok=True)
        _initial_evaluation(algorithm, setup)
    engine = Engine(setup.policy, algorithm, train_cfg, run, on_step_end=on_step_end)
    result = engine.train(resume=resume)
    policy = unwrap(engine.accelerator.unwrap_model(engine.model))
    if engine.accelerator.is_main_process:
        save_model(policy.lm, setup.tokenizer, run.final)
        setup.monitor.write(run.root / "alerts.json")
        if algorithm.last_evaluation is not None:
            write_policy_report(algorithm.last_evaluation, run.root, figures_dir=run.figures,
                                alerts=[asdict(a) for a in setup.monitor.alerts])
        plot_curves(run.metrics_path, run.figures,
                    kl_target=cfg.kl.target if cfg.kl.adaptive else None)
        atomic_write_json(run.root / "eval.json", {**result.eval_metrics,
                                                   "alerts": len(setup.monitor.alerts)})
    return result
