"""Online RL commands, one per registered online algorithm (``grpo``, ``rloo``, ``ppo``,
``reinforce-pp``, ``online-dpo``, ...), and ``eval policy``."""

from __future__ import annotations

from pathlib import Path

import typer

from prefalign.cli.common import CONFIG_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION, print_result
from prefalign.cli.confighelp import config_epilog
from prefalign.stages.online.registry import (
    OnlineAlgorithm,
    config_model,
    load_online_config,
    online_algorithms,
)


def _stage_command(app: typer.Typer, spec: OnlineAlgorithm) -> None:
    def command(config: Path | None = CONFIG_OPTION,
                overrides: list[str] | None = OVERRIDES_ARGUMENT,
                resume: bool = RESUME_OPTION) -> None:
        from prefalign.stages.online import run_online

        cfg = load_online_config(spec.name, config, overrides or [])
        print_result(cfg.run_dir, run_online(cfg, resume=resume))

    command.__doc__ = spec.help()
    app.command(name=spec.name, epilog=config_epilog(config_model(spec)))(command)


RUN_DIR_ARGUMENT = typer.Argument(..., help="An online run directory (with config.yaml and "
                                  "final/).")
OUT_OPTION = typer.Option(None, "--out", help="Report folder (default RUN_DIR/policy-eval).")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    for spec in online_algorithms().values():
        _stage_command(app, spec)

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
