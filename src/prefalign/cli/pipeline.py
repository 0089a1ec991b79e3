"""``prefalign pipeline CONFIG.yaml``: every stage of a pipeline in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from prefalign.cli.confighelp import config_epilog
from prefalign.config.pipeline import DEFAULT_PIPELINE
from prefalign.pipeline import PIPELINES, get_pipeline


def _stage_lists() -> str:
    get_pipeline(DEFAULT_PIPELINE)  # discovers every pipeline
    return "; ".join(f"{name}: {', '.join(p.order)}" for name, p in sorted(PIPELINES.items()))


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    default = get_pipeline(DEFAULT_PIPELINE)

    @app.command(epilog=f"The {default.name} pipeline's config.\n\n"
                 + config_epilog(default.config))
    def pipeline(
        config: Path = typer.Argument(..., help="Pipeline YAML, e.g. configs/minigrid.yaml; "
                                      "its 'pipeline:' or 'task:' key names the pipeline "
                                      f"(default {DEFAULT_PIPELINE})."),
        overrides: list[str] | None = typer.Argument(
            None, help="key=value overrides, e.g. sft.train.lr=5e-4 data.test_seeds=10 "
            "name=my-run.", show_default=False),
        from_stage: str | None = typer.Option(
            None, "--from", help=f"Run this stage and every later one again from scratch "
            f"({_stage_lists()})."),
    ) -> None:
        """Run the pipeline's stages in runs/<name>/; finished stages are skipped on re-run."""
        from prefalign.pipeline import load_pipeline_config, run_pipeline

        cfg = load_pipeline_config(config, overrides or [])
        result = run_pipeline(cfg, from_stage=from_stage)
        ran = ", ".join(f"{name} {result.seconds[name]:.0f}s" for name in result.ran)
        skipped = f"; skipped {', '.join(result.skipped)}" if result.skipped else ""
        report = result.root / "report.md"
        where = f"report in {report}" if report.is_file() else f"output in {result.root}"
        typer.echo(f"done: ran {ran or 'nothing'}{skipped}; {where}")
