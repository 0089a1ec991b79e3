"""Figures for reports, drawn with matplotlib's Agg backend (no display needed).

Each helper writes one PNG and returns its path; the parent folder is created.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def score_histogram(chosen: torch.Tensor, rejected: torch.Tensor, path: str | Path,
                    bins: int = 30) -> Path:
    """Overlaid histograms of chosen and rejected scores on shared bin edges."""
    plt = _pyplot()
    chosen_values = chosen.double().flatten().tolist()
    rejected_values = rejected.double().flatten().tolist()
    low = min(chosen_values + rejected_values)
    high = max(chosen_values + rejected_values)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.hist(chosen_values, bins=edges, alpha=0.55, color="tab:green",
            label=f"chosen (mean {sum(chosen_values) / len(chosen_values):.2f})")
    ax.hist(rejected_values, bins=edges, alpha=0.55, color="tab:red",
            label=f"rejected (mean {sum(rejected_values) / len(rejected_values):.2f})")
    ax.set_xlabel("reward score")
    ax.set_ylabel("responses")
    ax.set_title(f"Reward scores of {len(chosen_values)} held-out pairs")
    ax.legend()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def reliability_diagram(bins: Sequence[dict[str, float]], ece: float,
                        path: str | Path, subtitle: str = "") -> Path:
    """Observed frequency against mean predicted probability per bin, with the diagonal.

    ``bins`` as returned by ``prefalign.eval.rm.expected_calibration_error``;
    bars span each bin, their height is the observed frequency, dots mark the
    mean confidence, the bin counts are written above the bars, and ``subtitle``
    (if any) goes under the title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    filled = [b for b in bins if b["count"] > 0 and not math.isnan(b["accuracy"])]
    ax.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled],
           width=[b["upper"] - b["lower"] for b in filled], align="edge", alpha=0.6,
           edgecolor="black", color="tab:blue", label="observed frequency")
    ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o",
            color="tab:orange", label="(mean predicted, observed)")
    for b in filled:
        ax.text((b["lower"] + b["upper"]) / 2, min(b["accuracy"] + 0.02, 0.97),
                str(b["count"]), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability σ(r₁ − r₂)")
    ax.set_ylabel("observed frequency")
    title = f"Reliability diagram (ECE = {ece:.3f})"
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
