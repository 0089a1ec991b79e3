"""Online RL commands, one per registered online algorithm (``grpo``, ``rloo``, ``ppo``,
``reinforce-pp``, ``online-dpo``, ...)."""

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


def register(app: typer.Typer) -> None:
    for spec in online_algorithms().values():
        _stage_command(app, spec)

