"""Online RL commands (``grpo``, ``rloo``, ``ppo``, ``online-dpo``) and ``eval policy``."""

from __future__ import annotations

from pathlib import Path

import typer

from prefalign.cli.common import CONFIG_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION, print_result
from prefalign.cli.confighelp import config_epilog
from prefalign.config import OnlineConfig, load_config
from prefalign.errors import ConfigError

HELP = {
    "grpo": "GRPO: group-normalised advantages over n samples per prompt, clipped ratio, "
            "KL to the reference (Dr. GRPO with policy.normalize_std=false).",
    "rloo": "RLOO: REINFORCE with a leave-one-out baseline over k samples per prompt.",
    "ppo": "PPO: value head, GAE, clipped policy and value losses, adaptive KL penalty.",
    "online-dpo": "Iterative DPO: sample pairs from the policy, label with the reward, train "
                  "on a buffer (current, rolling2 or full); optional XPO exploration.",
}


def load_online_config(algorithm: str, config: Path | None, overrides: list[str]) -> OnlineConfig:
    """The config for ``algorithm``; a file naming another algorithm is refused."""
    cfg = load_config(OnlineConfig, config, overrides, defaults={"algorithm": algorithm})
    if cfg.algorithm != algorithm:
        raise ConfigError(f"the config sets algorithm={cfg.algorithm}; run `prefalign "
                          f"{cfg.algorithm}` or remove the key")
    return cfg.check()


def _stage_command(app: typer.Typer, algorithm: str) -> None:
    def command(config: Path | None = CONFIG_OPTION,
                overrides: list[str] | None = OVERRIDES_ARGUMENT,
                resume: bool = RESUME_OPTION) -> None:
        from prefalign.stages.online import run_online

        cfg = load_online_config(algorithm, config, overrides or [])
        print_result(cfg.run_dir, run_online(cfg, resume=resume))

    command.__doc__ = HELP[algorithm]
    app.command(name=algorithm, epilog=config_epilog(OnlineConfig))(command)


RUN_DIR_ARGUMENT = typer.Argument(..., help="An online run directory (with config.yaml and "
                                  "final/).")
OUT_OPTION = typer.Option(None, "--out", help="Report folder (default RUN_DIR/policy-eval).")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    for algorithm in HELP:
        _stage_command(app, algorithm)

    @eval_app.command("policy")
    def policy(run_dir: Path = RUN_DIR_ARGUMENT, out: Path | None = OUT_OPTION,
               overrides: list[str] | None = OVERRIDES_ARGUMENT) -> None:
        """Policy vs reference on held-out prompts: reward, win rate, KL, length, pass rate.

        Writes policy_eval.json, a reward histogram and a side-by-side examples table.
        """
        from prefalign.stages.online.evaluate_run import evaluate_run

        evaluation, paths = evaluate_run(run_dir, overrides or [], out)
        summary = ", ".join(f"{k}={v:.4g}" for k, v in evaluation.metrics.items())
        typer.echo(f"{summary}\nreport: {paths['examples']}, {paths['histogram']}")
