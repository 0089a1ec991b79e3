"""Figures of a policy comparison (matplotlib, PNG): the reward-vs-KL frontier,
reward histograms per policy, and answer-length distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def frontier(comparison, judge: str, path: Path) -> Path:
    """Mean reward (with its bootstrap interval) against the per-sequence k1 KL."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for row in comparison.rows:
        stats = row["rewards"][judge]
        kl = row.get("kl_k1_seq", row.get("kl_bound"))
        if kl is None:
            continue
        error = [[stats["mean"] - stats["ci_low"]], [stats["ci_high"] - stats["mean"]]]
        marker = "s" if row["best_of"] > 1 else "o"
        axis.errorbar([kl], [stats["mean"]], yerr=error, fmt=marker, capsize=4,
                      label=row["policy"])
    axis.set_xlabel("KL to the reference (nats per sequence; best-of-n: bound)")
    axis.set_ylabel(f"mean reward ({judge})")
    axis.set_title("Reward vs KL")
    axis.legend(fontsize=8)
    return _save(figure, path)


def reward_histograms(comparison, judge: str, path: Path) -> Path:
    """One reward histogram per policy on shared bins."""
    plt = _pyplot()
    count = len(comparison.answers)
    figure, axes = plt.subplots(count, 1, figsize=(6, 1.8 * count + 0.6), sharex=True,
                                squeeze=False)
    values = np.concatenate([a.scores[judge] for a in comparison.answers])
    low, high = float(values.min()), float(values.max())
    bins = np.linspace(low, high if high > low else low + 1.0, 21)
    for axis, answer in zip(axes[:, 0], comparison.answers):
        axis.hist(answer.scores[judge], bins=bins, color="tab:blue", alpha=0.8)
        axis.set_ylabel(answer.label, fontsize=8)
    axes[-1, 0].set_xlabel(f"reward ({judge})")
    axes[0, 0].set_title("Reward per policy")
    return _save(figure, path)


def length_distributions(comparison, path: Path) -> Path:
    """Overlaid histograms of answer lengths in tokens."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    lengths = np.concatenate([a.lengths for a in comparison.answers])
    bins = np.linspace(0, max(float(lengths.max()), 1.0), 21)
    for answer in comparison.answers:
        axis.hist(answer.lengths, bins=bins, alpha=0.5, label=answer.label)
    axis.set_xlabel("answer length (tokens)")
    axis.set_ylabel("prompts")
    axis.set_title("Answer lengths")
    axis.legend(fontsize=8)
    return _save(figure, path)


def comparison_figures(comparison, judge: str | None, folder: Path) -> dict[str, Path]:
    """Every figure, keyed by name; the reward figures need a pointwise ``judge``."""
    paths = {"lengths": length_distributions(comparison, folder / "lengths.png")}
    if judge is not None:
        paths["frontier"] = frontier(comparison, judge, folder / "frontier.png")
        paths["rewards"] = reward_histograms(comparison, judge, folder / "rewards.png")
    return paths
