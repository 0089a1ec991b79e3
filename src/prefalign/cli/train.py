"""Training commands for the offline stages: ``sft`` and ``dpo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prefalign.cli.common import CONFIG_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION, print_result
from prefalign.cli.confighelp import config_epilog
from prefalign.config import PreferenceConfig, SFTConfig, load_config


def register(app: typer.Typer) -> None:
    @app.command(epilog=config_epilog(SFTConfig))
    def sft(config: Optional[Path] = CONFIG_OPTION,
            overrides: Optional[list[str]] = OVERRIDES_ARGUMENT,
            resume: bool = RESUME_OPTION) -> None:
        """Supervised fine-tuning (loss on completion tokens only), LoRA or full."""
        from prefalign.stages.sft import run_sft

        cfg = load_config(SFTConfig, config, overrides or [])
        print_result(cfg.run_dir, run_sft(cfg, resume=resume))

    @app.command(epilog=config_epilog(PreferenceConfig))
    def dpo(config: Optional[Path] = CONFIG_OPTION,
            overrides: Optional[list[str]] = OVERRIDES_ARGUMENT,
            resume: bool = RESUME_OPTION) -> None:
        """Offline preference optimisation: the DPO family, loss chosen by loss.name=."""
        from prefalign.stages.preference import run_preference

        cfg = load_config(PreferenceConfig, config, overrides or [])
        print_result(cfg.run_dir, run_preference(cfg, resume=resume))
