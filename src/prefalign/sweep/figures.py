"""A figure per swept parameter: each metric's mean over seeds against the parameter's
value, 95% t-interval bars, one line per combination of the other swept values.

Numbers go on a numeric axis (logarithmic when positive and spanning a factor of
20 or more); anything else on evenly spaced positions, lines nudged apart so
their bars do not hide each other. Parameters with one value get no figure.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prefalign.sweep.aggregate import SweepResults  # noqa: E402

NUDGE = 0.04


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label(values: dict, names: list[str]) -> str:
    return ", ".join(f"{name}={values.get(name)}" for name in names)


def parameter_figure(results: SweepResults, parameter: str, parameters: list[str],
                     path: Path) -> Path | None:
    """Draw ``parameter``'s figure (module docstring) into ``path``; None with one value."""
    xs = list(dict.fromkeys(g.values[parameter] for g in results.groups
                            if g.values.get(parameter) is not None))
    if len(xs) < 2 or not results.metrics:
        return None
    numeric = all(_number(x) for x in xs)
    others = [name for name in parameters if name != parameter]
    lines: dict[str, list] = {}
    for group in results.groups:
        if group.values.get(parameter) is not None:
            lines.setdefault(_label(group.values, others), []).append(group)
    fig, axes = plt.subplots(1, len(results.metrics), squeeze=False,
                             figsize=(4.4 * len(results.metrics), 3.6))
    for axis, metric in zip(axes[0], results.metrics):
        for index, (label, groups) in enumerate(lines.items()):
            nudge = 0.0 if numeric else (index - (len(lines) - 1) / 2) * NUDGE
            points = sorted((g.values[parameter] if numeric else xs.index(g.values[parameter])
                             + nudge, g.stats[metric.key]) for g in groups
                            if metric.key in g.stats)
            if not points:
                continue
            x = [p for p, _ in points]
            mean = [s.mean for _, s in points]
            below = [s.mean - s.low if s.low is not None else 0.0 for _, s in points]
            above = [s.high - s.mean if s.high is not None else 0.0 for _, s in points]
            axis.errorbar(x, mean, yerr=[below, above], marker="o", capsize=3,
                          label=label or None)
        axis.set_title(metric.label, fontsize=10)
        axis.set_xlabel(parameter)
        axis.grid(alpha=0.3)
        if not numeric:
            axis.set_xticks(range(len(xs)), [str(x) for x in xs])
        elif min(xs) > 0 and max(xs) / min(xs) >= 20:
            axis.set_xscale("log")
        if others and axis is axes[0][0]:
            axis.legend(fontsize=7)
    fig.suptitle("mean over seeds; bars: 95% t-interval", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def parameter_figures(results: SweepResults, parameters: list[str],
                      folder: Path) -> dict[str, Path]:
    """Every parameter's figure that could be drawn, as ``{parameter: path}``."""
    drawn = {}
    for parameter in parameters:
        name = re.sub(r"[^A-Za-z0-9.+-]+", "-", parameter)
        path = parameter_figure(results, parameter, parameters, folder / f"{name}.png")
        if path is not None:
            drawn[parameter] = path
    return drawn
