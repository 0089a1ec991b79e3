"""``prefalign sweep SWEEP.yaml``: an experiment matrix over the stage commands."""

from __future__ import annotations

from pathlib import Path

import typer

EPILOG = ("The sweep file (docs/sweep.md): name, output_dir (default runs/sweeps), base "
          "{stage, config, overrides}, shared {NAME: {stage, config, overrides}} referred to "
          "as ${shared.NAME} (that run's final/ model), cells {grid: {key: a list of values}} "
          "or {list: a list of {key: value}} (stage and config may vary too), seeds "
          "(train.seed) e.g. [0, 1, 2], metrics: keys (or {key, label}) of each cell's "
          "eval.json.\n\n"
          "Output in output_dir/name: cells/<id>/ (the stage's run directory plus cell.log "
          "and cell.json), shared/<NAME>/, results.json, results.md, results.html, "
          "figures/<parameter>.png.\n\n"
          "On SLURM: `prefalign sweep S.yaml --shared-only`, then `sbatch --array=0-K "
          "--wrap 'prefalign sweep S.yaml --cell $SLURM_ARRAY_TASK_ID'` (K: the last index "
          "--dry-run prints), then `prefalign sweep S.yaml --table-only`.")


def register(app: typer.Typer) -> None:
    @app.command(epilog=EPILOG)
    def sweep(
        config: Path = typer.Argument(..., help="Sweep YAML, e.g. "
                                      "configs/experiments/quick.yaml.", show_default=False),
        max_parallel: int = typer.Option(1, "--max-parallel", "-j", min=1, help="Cells run "
                                         "at once, each in its own process (give the cells "
                                         "train.threads so that they share the cores)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print each run's index, id, "
                                     "state (done, resume, new) and command; run nothing."),
        cell: int | None = typer.Option(None, "--cell", help="Run only the cell with this "
                                        "index (as --dry-run numbers them; its shared runs "
                                        "must be done) and write no table: one task of a "
                                        "SLURM array."),
        shared_only: bool = typer.Option(False, "--shared-only", help="Run only the shared "
                                         "runs (before a --cell array)."),
        table_only: bool = typer.Option(False, "--table-only", help="Run nothing; write "
                                        "the results from the cells done so far."),
    ) -> None:
        """Run a matrix of stage runs (grid × seeds), each in its own process: finished
        cells are skipped, interrupted ones resumed, failed ones reported; then a table
        of each metric's mean and 95% t-interval over seeds, and a figure per parameter."""
        from prefalign.errors import ConfigError
        from prefalign.sweep import load_sweep, run_sweep, write_results
        from prefalign.sweep.report import summary
        from prefalign.sweep.runner import check_unchanged, plan_lines

        if sum([cell is not None, shared_only, table_only]) > 1:
            raise ConfigError("--cell, --shared-only and --table-only exclude each other")
        spec = load_sweep(config)
        if cell is not None and not 0 <= cell < len(spec.cells):
            raise ConfigError(f"--cell {cell}: {config} has {len(spec.cells)} cells, "
                              f"numbered 0 to {len(spec.cells) - 1}")
        if dry_run:
            typer.echo(f"sweep {spec.name}: {len(spec.cells)} cells, {len(spec.shared)} "
                       f"shared runs, in {spec.root}")
            typer.echo("\n".join(plan_lines(spec)))
            return
        failed = []
        if table_only:
            check_unchanged(spec, spec.shared + spec.cells)
        else:
            outcomes = run_sweep(spec, max_parallel, None if cell is None else [cell],
                                 shared_only)
            failed = [o for o in outcomes if o.status == "failed"]
            count = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped")}
            typer.echo(f"ran {count['done']}, skipped {count['skipped']} (done before), "
                       f"failed {len(failed)}")
            for outcome in failed:
                typer.echo(f"failed: {outcome.job.id}: exit {outcome.exit_code}: "
                           f"{outcome.message} (log: {spec.job_dir(outcome.job)}/cell.log)",
                           err=True)
        if cell is None and not shared_only:
            results = write_results(spec)
            typer.echo(f"{summary(spec, results)} Results in {spec.root / 'results.md'}")
        if failed:
            raise typer.Exit(1)
