"""The sweep's results in its folder: ``results.json`` (every cell and grid point),
``results.md`` and ``results.html`` (one row per grid point: the swept values, each
metric's mean over seeds with its 95% t-interval, the seeds done and their mean
seconds; failed cells; the figures) and ``figures/<parameter>.png``."""

from __future__ import annotations

import html
from pathlib import Path

from prefalign.engine.rundir import atomic_write_json, atomic_write_text
from prefalign.eval.compare_html import STYLE, embedded_image, html_table
from prefalign.sweep.aggregate import Group, Stat, SweepResults, collect_results
from prefalign.sweep.figures import parameter_figures
from prefalign.sweep.spec import Sweep

NOTE = ("Each metric: mean over the seeds that finished [95% t-interval: mean ± "
        "t(0.975, n−1)·s/√n]; one seed gives no interval.")


def format_stat(stat: Stat | None) -> str:
    """``mean [low, high]`` to 4 significant digits; the mean alone for one seed."""
    if stat is None:
        return "—"
    if stat.low is None:
        return f"{stat.mean:.4g}"
    return f"{stat.mean:.4g} [{stat.low:.4g}, {stat.high:.4g}]"


def _value(value) -> str:
    return "—" if value is None else str(value)


def table(sweep: Sweep, results: SweepResults) -> tuple[list[str], list[list[str]]]:
    """The header and one row of text per grid point."""
    header = [*sweep.parameters, *(m.label for m in results.metrics), "seeds", "mean s"]
    rows = []
    for group in results.groups:
        seeds = str(group.done) if group.done == len(group.cells) \
            else f"{group.done} of {len(group.cells)}"
        rows.append([*(_value(group.values[p]) for p in sweep.parameters),
                     *(format_stat(group.stats.get(m.key)) for m in results.metrics), seeds,
                     "—" if group.seconds is None else f"{group.seconds:.0f}"])
    return header, rows


def summary(sweep: Sweep, results: SweepResults) -> str:
    """One sentence: how many cells, how many done, failed and not run."""
    count = {status: sum(c.status == status for c in results.cells)
             for status in ("done", "failed", "not run")}
    shape = f"{len(results.groups)} grid points × {len(sweep.seeds)} seeds" \
        if sweep.seeds else f"{len(results.groups)} grid points"
    return (f"{len(results.cells)} cells ({shape}): {count['done']} done, "
            f"{count['failed']} failed, {count['not run']} not run. Source: {sweep.path}.")


def failures(results: SweepResults) -> list[str]:
    """``id: exit N: last line`` for each failed cell."""
    return [f"{c.id}: exit {c.exit_code}: {c.message}" for c in results.cells
            if c.status == "failed"]


def _group_json(group: Group) -> dict:
    return {"values": group.values, "cells": [c.id for c in group.cells], "done": group.done,
            "seconds_mean": group.seconds,
            "metrics": {key: {"mean": s.mean, "low": s.low, "high": s.high,
                              "n": len(s.values), "values": s.values}
                        for key, s in group.stats.items()}}


def _markdown(sweep: Sweep, results: SweepResults, figures: dict[str, Path]) -> str:
    header, rows = table(sweep, results)
    escape = str.maketrans({"|": "\\|"})
    lines = [f"# Sweep {sweep.name}", "", summary(sweep, results), "", NOTE, "",
             "| " + " | ".join(h.translate(escape) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.translate(escape) for c in row) + " |" for row in rows]
    if failures(results):
        lines += ["", "## Failed cells", ""] + [f"- {line}" for line in failures(results)]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{p}]({path.relative_to(sweep.root)})"
                                           for p, path in figures.items()]
    return "\n".join(lines) + "\n"


def _html(sweep: Sweep, results: SweepResults, figures: dict[str, Path]) -> str:
    header, rows = table(sweep, results)
    title = html.escape(f"Sweep {sweep.name}")
    failed = "".join(f"<li>{html.escape(line)}</li>" for line in failures(results))
    images = "".join(f"<h2>{html.escape(p)}</h2>{embedded_image(path, p)}"
                     for p, path in figures.items())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
            f"<p>{html.escape(summary(sweep, results))}</p><p>{html.escape(NOTE)}</p>"
            f"{html_table(header, rows)}"
            f"{f'<h2>Failed cells</h2><ul>{failed}</ul>' if failed else ''}{images}"
            f"</body></html>\n")


def write_results(sweep: Sweep) -> SweepResults:
    """Gather the cells' results and write every result file (module docstring)."""
    results = collect_results(sweep)
    figures = parameter_figures(results, sweep.parameters, sweep.root / "figures")
    atomic_write_json(sweep.root / "results.json", {
        "sweep": sweep.name, "source": str(sweep.path), "parameters": sweep.parameters,
        "seeds": sweep.seeds,
        "metrics": [{"key": m.key, "label": m.label} for m in results.metrics],
        "groups": [_group_json(g) for g in results.groups],
        "cells": [{"id": c.id, "values": c.values, "seed": c.seed, "status": c.status,
                   "exit_code": c.exit_code, "seconds": c.seconds, "metrics": c.metrics,
                   "message": c.message} for c in results.cells]})
    atomic_write_text(sweep.root / "results.md", _markdown(sweep, results, figures))
    atomic_write_text(sweep.root / "results.html", _html(sweep, results, figures))
    return results
