"""Training curves of a run, drawn from its ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prefalign.engine.metrics import read_metrics  # noqa: E402


def plot_training_curves(metrics_path: str | Path, out_path: str | Path,
                         keys: tuple[str, ...] = ("loss",)) -> Path | None:
    """One panel per key: the training value per step and, if logged, ``eval/<key>``.

    Returns the written PNG, or None when the run logged none of the keys.
    """
    rows = read_metrics(metrics_path)
    present = [k for k in keys if any(k in r or f"eval/{k}" in r for r in rows)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for axis, key in zip(axes[0], present):
        for name, style in ((key, "-"), (f"eval/{key}", "o-")):
            points = [(r["step"], r[name]) for r in rows
                      if isinstance(r.get(name), (int, float))]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, style, markersize=3,
                          label="held-out" if name.startswith("eval/") else "train")
        axis.set_title(key)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
