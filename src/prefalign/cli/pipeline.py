"""``prefalign pipeline CONFIG.yaml``: every stage from data to report in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from prefalign.cli.confighelp import config_epilog
from prefalign.config.pipeline import STAGE_ORDER, PipelineConfig


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command(epilog=config_epilog(PipelineConfig))
    def pipeline(
        config: Path = typer.Argument(..., help="Pipeline YAML, e.g. configs/minigrid.yaml."),
        overrides: list[str] | None = typer.Argument(
            None, help="key=value overrides, e.g. sft.train.lr=5e-4 data.test_seeds=10 "
            "name=my-run.", show_default=False),
        from_stage: str | None = typer.Option(
            None, "--from", help=f"Run this stage and every later one again from scratch "
            f"({', '.join(STAGE_ORDER)})."),
    ) -> None:
        """Run the pipeline's stages in runs/<name>/; finished stages are skipped on re-run."""
        from prefalign.config import load_config
        from prefalign.pipeline import run_pipeline

        cfg = load_config(PipelineConfig, config, overrides or [])
        result = run_pipeline(cfg, from_stage=from_stage)
        ran = ", ".join(f"{name} {result.seconds[name]:.0f}s" for name in result.ran)
        skipped = f"; skipped {', '.join(result.skipped)}" if result.skipped else ""
        report = result.root / "report.md"
        where = f"report in {report}" if report.is_file() else f"output in {result.root}"
        typer.echo(f"done: ran {ran or 'nothing'}{skipped}; {where}")
