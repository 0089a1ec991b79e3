"""Training commands for the offline stages: ``sft`` and ``dpo``."""

from __future__ import annotations

from pathlib import Path

import typer

from prefalign.cli.common import CONFIG_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION, print_result
from prefalign.cli.confighelp import config_epilog
from prefalign.cli.data import data_app
from prefalign.config import KTOConfig, PreferenceConfig, SFTConfig, load_config


def loss_epilog() -> str:
    """Help lines for the parameters of the built-in preference losses (``loss.<key>``),
    from the torch-free copy of their signatures (``prefalign.config.loss_table``)."""
    from prefalign.config.loss_table import BUILTIN_LOSS_PARAMETERS

    lines = ["Loss parameters (loss.<key>=value; each loss's default after 'default'):\n\n"]
    for key, per_loss in BUILTIN_LOSS_PARAMETERS.items():
        defaults = ", ".join(f"{name} {default!r}" for name, (default, _) in per_loss.items())
        description = " ".join(dict.fromkeys(text for _, text in per_loss.values() if text))
        lines.append(f"  loss.{key} (default {defaults}): {description}\n\n")
    return "".join(lines)


def register(app: typer.Typer) -> None:
    @data_app.command("filter-noisy")
    def filter_noisy(
        source: str = typer.Argument(..., help="Preference pairs (file, hf:NAME or builtin:NAME)."),
        destination: Path = typer.Argument(..., help="Where to write the kept pairs (.jsonl)."),
        fraction: float = typer.Option(0.1, help="Share of pairs to drop, lowest reference "
                                       "margin first."),
        model: str = typer.Option("embedded", help="Reference model."),
        max_length: int = typer.Option(512, help="Maximum prompt + completion tokens."),
        max_prompt_length: int = typer.Option(384, help="Maximum prompt tokens."),
    ) -> None:
        """Drop the pairs the reference model disagrees with most (likely label noise)."""
        from prefalign.stages.preference_filter import filter_noisy_file

        counts = filter_noisy_file(source, str(destination), model, fraction,
                                   max_length=max_length, max_prompt_length=max_prompt_length)
        typer.echo(f"kept {counts['kept']} of {counts['encoded']} pairs "
                   f"(dropped {counts['dropped']}); wrote {destination}")

    @app.command(epilog=config_epilog(SFTConfig))
    def sft(config: Path | None = CONFIG_OPTION,
            overrides: list[str] | None = OVERRIDES_ARGUMENT,
            resume: bool = RESUME_OPTION) -> None:
        """Supervised fine-tuning (loss on completion tokens only), LoRA or full."""
        from prefalign.stages.sft import run_sft

        cfg = load_config(SFTConfig, config, overrides or [])
        print_result(cfg.run_dir, run_sft(cfg, resume=resume))

    @app.command(epilog=config_epilog(PreferenceConfig) + loss_epilog())
    def dpo(config: Path | None = CONFIG_OPTION,
            overrides: list[str] | None = OVERRIDES_ARGUMENT,
            resume: bool = RESUME_OPTION) -> None:
        """Offline preference optimisation: the DPO family, loss chosen by loss.name=."""
        from prefalign.stages.preference import run_preference

        cfg = load_config(PreferenceConfig, config, overrides or [])
        print_result(cfg.run_dir, run_preference(cfg, resume=resume))

    @app.command(epilog=config_epilog(KTOConfig))
    def kto(config: Path | None = CONFIG_OPTION,
            overrides: list[str] | None = OVERRIDES_ARGUMENT,
            resume: bool = RESUME_OPTION) -> None:
        """KTO on unpaired desirable/undesirable completions (or pairs with from_pairs=true)."""
        from prefalign.stages.kto import run_kto

        cfg = load_config(KTOConfig, config, overrides or [])
        print_result(cfg.run_dir, run_kto(cfg, resume=resume))
