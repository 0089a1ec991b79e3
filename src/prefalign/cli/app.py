"""The root typer app and the training commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from prefalign.cli.confighelp import config_epilog
from prefalign.cli.data import data_app
from prefalign.cli.models import models_app
from prefalign.config import PreferenceConfig, SFTConfig, load_config

app = typer.Typer(
    help="prefalign: preference-based alignment of language models — SFT, reward models, "
         "the DPO family, online RL, and the evaluation that proves the result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config file.", exists=False)
OVERRIDES_ARGUMENT = typer.Argument(None, help="key=value overrides, e.g. train.lr=1e-4 "
                                    "model.lora=null name=my-run.", show_default=False)
RESUME_OPTION = typer.Option(False, "--resume", help="Continue the run from its latest "
                             "checkpoint (same config).")


@app.command(epilog=config_epilog(SFTConfig))
def sft(config: Optional[Path] = CONFIG_OPTION,
        overrides: Optional[list[str]] = OVERRIDES_ARGUMENT,
        resume: bool = RESUME_OPTION) -> None:
    """Supervised fine-tuning (loss on completion tokens only), LoRA or full."""
    from prefalign.stages.sft import run_sft

    cfg = load_config(SFTConfig, config, overrides or [])
    result = run_sft(cfg, resume=resume)
    _print_result(cfg.run_dir, result)


@app.command(epilog=config_epilog(PreferenceConfig))
def dpo(config: Optional[Path] = CONFIG_OPTION,
        overrides: Optional[list[str]] = OVERRIDES_ARGUMENT,
        resume: bool = RESUME_OPTION) -> None:
    """Offline preference optimisation: the DPO family, loss chosen by loss.name=."""
    from prefalign.stages.preference import run_preference

    cfg = load_config(PreferenceConfig, config, overrides or [])
    result = run_preference(cfg, resume=resume)
    _print_result(cfg.run_dir, result)


def _print_result(run_dir: Path, result) -> None:
    summary = ", ".join(f"{k}={v:.4g}" for k, v in result.eval_metrics.items())
    typer.echo(f"done: {result.step} steps; held-out {summary or 'n/a'}; output in {run_dir}")
