"""Experiment matrices over the stage commands: ``prefalign sweep SWEEP.yaml``.

A sweep file names a base stage run, the values to vary (a grid or a list), seeds,
shared runs computed once (``${shared.NAME}``) and the metrics to tabulate.
``spec`` reads and checks the file and expands it into jobs (``stages``: the
stage commands and the check of each job's config); ``runner`` runs each
job as its own ``python -m prefalign <stage> ...`` process (skipping finished ones,
resuming interrupted ones); ``aggregate`` gathers each cell's metrics and averages
them over seeds with t-intervals; ``report`` writes ``results.json``, ``results.md``,
``results.html`` and a figure per swept parameter (``figures``). docs/sweep.md
describes the file and the workflow.
"""

from prefalign.sweep.aggregate import collect_results
from prefalign.sweep.report import write_results
from prefalign.sweep.runner import JobOutcome, job_state, run_sweep
from prefalign.sweep.spec import Job, Metric, Sweep, load_sweep

__all__ = ["Job", "JobOutcome", "Metric", "Sweep", "collect_results", "job_state",
           "load_sweep", "run_sweep", "write_results"]
