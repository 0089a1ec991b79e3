"""``prefalign eval policy RUN_DIR``: a finished online run's policy against its reference.

(Any other policy, or an online run with ``--judge``, goes through
``prefalign.eval.any_policy``.)

The run's own ``config.yaml`` says everything: the held-out prompts (the same
split as in training, or ``data.eval``), the reward, the judge and the
evaluation settings; ``key=value`` overrides change any of them (for example
``eval.prompts=200`` or ``data.eval=../shared/data/gsm8k/test.jsonl``). The
policy is ``<run>/final``; the reference is the run's starting model. Both are
scored at the run's one log-prob temperature (``model.logprob_temperature``), as
in training, so the KL here and the KL logged during training are the same
estimate.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from prefalign.errors import ConfigError
from prefalign.eval.policy import PolicyEvaluation, write_policy_report
from prefalign.models.load import load_model
from prefalign.stages.lifecycle import load_frozen
from prefalign.stages.online.model import PolicyModel, logprob_temperature
from prefalign.stages.online.reference import ReferencePolicy
from prefalign.stages.online.registry import load_online_config, online_algorithms
from prefalign.stages.online.run import build_evaluator, validate_inputs
from prefalign.stages.online.setup import policy_side, reference_side


def is_online_run(run_dir: str | Path) -> bool:
    """True when ``run_dir/config.yaml`` names a registered online algorithm."""
    config_path = Path(run_dir) / "config.yaml"
    try:
        loaded = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(loaded, dict) and loaded.get("algorithm") in online_algorithms()


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None,
                 out_dir: str | Path | None = None) -> tuple[PolicyEvaluation, dict[str, Path]]:
    """Evaluate ``run_dir/final`` against the run's starting model; write the report
    (``policy_eval.json``, ``reward_hist.png``, ``examples.md``) into ``out_dir``
    (default ``run_dir/policy-eval``)."""
    run_dir = Path(run_dir)
    config_path, final = run_dir / "config.yaml", run_dir / "final"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not an online run directory (no config.yaml)")
    cfg = load_online_config(None, config_path, overrides or [])
    _, held_out, scorer, judge = validate_inputs(cfg)
    if not held_out:
        raise ConfigError("no held-out prompts: set data.eval or data.eval_fraction")
    if not final.is_dir():
        raise ConfigError(f"{run_dir} has no final/ model yet; finish (or resume) the run first")
    temperature = logprob_temperature(cfg)
    policy_lm, tokenizer = load_model(str(final), dtype=cfg.model.dtype)
    policy = PolicyModel(policy_lm.requires_grad_(False).eval(), temperature)
    reference_lm = load_frozen(cfg.reference.model or cfg.model.name, cfg.model)
    reference = ReferencePolicy(policy, PolicyModel(reference_lm, temperature))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    evaluator = build_evaluator(cfg, held_out, tokenizer, scorer, judge, pad_id)
    sizes = (cfg.eval.batch_size, cfg.train.batch_size)
    evaluation = evaluator.evaluate(policy_side(policy, tokenizer, *sizes),
                                    reference_side(reference, tokenizer, *sizes))
    target = Path(out_dir) if out_dir is not None else run_dir / "policy-eval"
    return evaluation, write_policy_report(evaluation, target)
