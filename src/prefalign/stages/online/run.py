"""Running an online stage end to end: check, load, train, evaluate, report.

Everything that bad input can break is checked before a model is loaded: the
config (its algorithm, group sizes, minibatch shapes), the reward names and
parameters, the prompt sets, and that every prompt row has the fields the
rewards read. The rest is the shared stage lifecycle (``stages.lifecycle``):
run directory, seed, policy and reference, manifest, Engine, main-process
outputs. The algorithm is ``cfg.algorithm``'s registered declaration
(``registry``); it decides the value head, the reference log-probs, the loss.

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
from prefalign.engine.loop import TrainResult
from prefalign.engine.metrics import MetricsLogger
from prefalign.errors import ConfigError
from prefalign.eval.hacking import HackingMonitor
from prefalign.eval.policy import EvalSettings, PolicyEvaluator, write_policy_report
from prefalign.models.load import resolve_model_source
from prefalign.models.save import save_model
from prefalign.rewards import available_rewards
from prefalign.rollout.batch import encode_prompts
from prefalign.rollout.engines import build_engine
from prefalign.stages.lifecycle import Lifecycle, Models
from prefalign.stages.online.curves import plot_curves
from prefalign.stages.online.model import PolicyModel, logprob_temperature, unwrap
from prefalign.stages.online.process_reward import ProcessRewardScorer
from prefalign.stages.online.prompts import check_reward_fields, load_prompt_sets
from prefalign.stages.online.reference import build_reference
from prefalign.stages.online.registry import OnlineAlgorithm, check_config, get_online_algorithm
from prefalign.stages.online.rollout_algorithm import RolloutAlgorithm
from prefalign.stages.online.scoring import RewardScorer, prompt_text
from prefalign.stages.online.setup import OnlineSetup


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
    check_config(cfg)
    check_reward_names(cfg)
    train, held_out = load_prompt_sets(cfg.data, cfg.train.seed)
    held_out = held_out[: cfg.eval.prompts]
    scorer = RewardScorer(cfg.rewards)
    judge = RewardScorer(cfg.eval.judge) if cfg.eval.judge else None
    check_reward_fields(scorer.required_fields, {cfg.data.train_name: train,
                                                 cfg.data.eval or "held-out split": held_out})
    if judge is not None:
        check_reward_fields(judge.required_fields, {cfg.data.eval or "held-out split": held_out})
    return train, held_out, scorer, judge


def build_evaluator(cfg: OnlineConfig, held_out: list[dict], tokenizer, scorer, judge,
                    pad_id: int) -> PolicyEvaluator | None:
    """The held-out evaluator (``None`` without held-out prompts); its KL samples at the
    run's log-prob temperature."""
    if not held_out:
        return None
    settings = EvalSettings(max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
                            temperature=cfg.eval.temperature, stop=tuple(cfg.rollout.stop),
                            response_prefix=cfg.rollout.response_prefix,
                            kl_samples=cfg.eval.kl_samples,
                            kl_temperature=logprob_temperature(cfg), seed=cfg.train.seed)
    ids = encode_prompts(held_out, tokenizer, use_chat_template=cfg.data.use_chat_template,
                         max_prompt_length=cfg.data.max_prompt_length,
                         truncation=cfg.data.truncation,
                         response_prefix=cfg.rollout.response_prefix)
    return PolicyEvaluator(held_out, ids, scorer, judge, settings, pad_id, prompt_text)


def build_setup(life: Lifecycle, spec: OnlineAlgorithm, models: Models, train: list[dict],
                held_out: list[dict], scorer: RewardScorer,
                judge: RewardScorer | None) -> OnlineSetup:
    """The shared pieces of the run around the lifecycle's policy and reference."""
    cfg, tokenizer = life.cfg, models.tokenizer
    policy = PolicyModel(models.policy, logprob_temperature(cfg), value_head=spec.needs_values)
    reference = build_reference(cfg, policy, models.reference)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    prompt_ids = encode_prompts(train, tokenizer, use_chat_template=cfg.data.use_chat_template,
                                max_prompt_length=cfg.data.max_prompt_length,
                                truncation=cfg.data.truncation,
                                response_prefix=cfg.rollout.response_prefix)
    engine = build_engine(cfg.rollout.engine, models.policy, tokenizer,
                          model_source=resolve_model_source(cfg.model.name),
                          batch_size=cfg.rollout.generation_batch_size,
                          gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
                          seed=cfg.train.seed)
    h = cfg.hacking
    monitor = HackingMonitor(h.warmup_rollouts, h.length_z, h.kl_rising_evals, h.disagreement_z)
    process = (ProcessRewardScorer(cfg.policy.process_reward, tokenizer, cfg.train.batch_size)
               if cfg.policy.process_reward else None)
    return OnlineSetup(cfg, spec, life.run, policy, tokenizer, engine, scorer, reference, train,
                       prompt_ids, build_evaluator(cfg, held_out, tokenizer, scorer, judge,
                                                   pad_id), monitor, life.autocast, process)


def _initial_evaluation(life: Lifecycle, algorithm, setup: OnlineSetup) -> None:
    """Held-out metrics of the starting policy, logged at step 0 under the training
    precision (the Engine does this itself when it evaluates periodically)."""
    with torch.no_grad(), life.autocast():
        values = algorithm.evaluate(setup.policy)
    if values:
        MetricsLogger(setup.run.metrics_path).log(0, {f"eval/{k}": v for k, v in values.items()})
        life.say("before training: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()
                                                 if not k.startswith("hacking/")))


def _save_outputs(life: Lifecycle, setup: OnlineSetup, algorithm, policy: PolicyModel) -> None:
    """The policy, alerts, the held-out report and the curves (main process)."""
    run, cfg = setup.run, setup.cfg
    save_model(policy.lm, setup.tokenizer, run.final)
    setup.monitor.write(run.root / "alerts.json")
    if algorithm.last_evaluation is not None:
        write_policy_report(algorithm.last_evaluation, run.root, figures_dir=run.figures,
                            alerts=[asdict(a) for a in setup.monitor.alerts])
    plot_curves(run.metrics_path, run.figures, kl_target=cfg.kl.target if cfg.kl.adaptive
                else None)


def run_online(cfg: OnlineConfig, resume: bool = False,
               on_step_end: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` with ``cfg.algorithm``; the policy lands in ``runs/<name>/final``."""
    spec = get_online_algorithm(cfg.algorithm)
    train, held_out, scorer, judge = validate_inputs(cfg)
    life = Lifecycle(cfg, spec.name, resume, on_step_end)
    life.setup()
    setup = build_setup(life, spec, life.load_models(needs_reference=True), train, held_out,
                        scorer, judge)
    algorithm = (spec.trainer or RolloutAlgorithm)(setup, spec)
    life.write_manifest({"train": train, "eval": held_out}, train_prompts=len(train),
                        eval_prompts=len(held_out), engine=setup.engine.name,
                        reference=setup.reference.kind, **algorithm.manifest())
    train_cfg = spec.train_config(cfg) if spec.train_config is not None else cfg.train
    if not resume and not train_cfg.eval_every:
        life.run.metrics_path.unlink(missing_ok=True)
        _initial_evaluation(life, algorithm, setup)
    result = life.train(setup.policy, algorithm, train_cfg)
    policy = unwrap(life.trained())
    alerts = len(setup.monitor.alerts)
    return life.finish(result, save=lambda: _save_outputs(life, setup, algorithm, policy),
                       figures=(), eval_metrics={**result.eval_metrics, "alerts": alerts})
