"""Figures of the MiniGrid pipeline report, drawn with matplotlib's Agg backend.

``success_by_environment``: grouped bars, one group per environment (and all
together), one bar per policy, with 95% Wilson intervals as error bars.
``error_types``: per policy, stacked bars of the share of single-step decisions
in each failure type, and of the share whose subgoal is one of the expert
decision's perturbations (wrong object, wrong order, omission).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def short_environment(env_id: str) -> str:
    """``MiniGrid-DoorKey-8x8-v0`` → ``DoorKey-8x8``."""
    parts = env_id.split("-")
    return "-".join(parts[1:-1]) if len(parts) > 2 else env_id


def success_by_environment(groups: Sequence[str], policies: Sequence[str],
                           success: dict[str, dict[str, dict]], path: str | Path) -> Path:
    """``success[policy][group]`` is a proportion ``{"rate", "ci95", "k", "n"}``."""
    plt = _pyplot()
    width = 0.8 / max(len(policies), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(groups) + 2), 4.2))
    for index, policy in enumerate(policies):
        xs, heights, low, high = [], [], [], []
        for position, group in enumerate(groups):
            value = success[policy][group]
            rate = value["rate"] or 0.0
            xs.append(position - 0.4 + width * (index + 0.5))
            heights.append(rate)
            low.append(max(rate - value["ci95"][0], 0.0))  # rounding can make these -1e-17
            high.append(max(value["ci95"][1] - rate, 0.0))
        ax.bar(xs, heights, width, yerr=[low, high], capsize=3, label=policy)
    ax.set_xticks(range(len(groups)), [short_environment(g) for g in groups])
    ax.set_ylim(0, 1.22)  # headroom for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("closed-loop success (95% Wilson CI)")
    ax.set_title("Held-out closed-loop success per environment")
    ax.legend(fontsize="small", ncols=min(len(policies), 4), loc="upper center")
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def _stacked(ax, policies: Sequence[str], shares: dict[str, dict[str, float]],
             categories: Sequence[str], title: str) -> None:
    bottoms = [0.0] * len(policies)
    for category in categories:
        values = [shares[p].get(category, 0.0) for p in policies]
        ax.bar(range(len(policies)), values, 0.6, bottom=bottoms, label=category)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xticks(range(len(policies)), policies, rotation=15)
    ax.set_ylim(0, max(max(bottoms, default=0.0) * 1.15, 0.05))
    ax.set_ylabel("share of single-step decisions")
    ax.set_title(title)
    ax.legend(fontsize="small")


def error_types(policies: Sequence[str], failures: dict[str, dict[str, float]],
                perturbations: dict[str, dict[str, float]], path: str | Path) -> Path:
    """Stacked shares per policy: failure types (left) and perturbation types (right)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    failure_kinds = list(dict.fromkeys(k for p in policies for k in failures[p]))
    perturbation_kinds = list(dict.fromkeys(k for p in policies for k in perturbations[p]))
    _stacked(left, policies, failures, failure_kinds, "Why single-step subgoals failed")
    _stacked(right, policies, perturbations, perturbation_kinds,
             "Subgoals of a perturbation type")
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
