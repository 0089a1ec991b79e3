"""Options shared by the stage commands, and result printing."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config file.")
OVERRIDES_ARGUMENT = typer.Argument(None, help="key=value overrides, e.g. train.lr=1e-4 "
                                    "model.lora=null name=my-run.", show_default=False)
RESUME_OPTION = typer.Option(False, "--resume", help="Continue the run from its latest "
                             "checkpoint (same config).")


def print_result(run_dir: Path, result) -> None:
    """One line: steps done, held-out metrics, where the output is."""
    summary = ", ".join(f"{k}={v:.4g}" for k, v in result.eval_metrics.items()
                        if isinstance(v, (int, float)))
    typer.echo(f"done: {result.step} steps; held-out {summary or 'n/a'}; output in {run_dir}")
