"""Training curves of an online run, drawn from its ``metrics.jsonl``.

One PNG per group of metrics that the run logged: held-out and rollout pass
rate, reward, win rate against the reference, and the KL to the reference
(with the adaptive coefficient β and the target when PPO adapts it).
"""

from __future__ import annotations

from pathlib import Path

from prefalign.engine.metrics import read_metrics

CURVES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "pass_rate": ("verifier pass rate", [("eval/pass_rate", "held-out (greedy)"),
                                         ("rollout/pass_rate", "rollouts (sampled)")]),
    "reward": ("reward", [("eval/reward", "held-out (greedy)"),
                          ("reward/mean", "rollouts (sampled)")]),
    "win_rate": ("win rate vs reference", [("eval/win_rate", "held-out")]),
    "kl": ("KL to reference (nats / sequence)", [("kl/ref", "rollouts"),
                                                 ("eval/kl", "held-out")]),
}


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["step"]), float(r[key])) for r in rows
              if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(metrics_path: str | Path, out_dir: str | Path,
                kl_target: float | None = None) -> list[Path]:
    """Write ``<name>.png`` in ``out_dir`` for every curve group with data; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    out_dir = Path(out_dir)
    written = []
    for name, (label, keys) in CURVES.items():
        series = [(legend, *_series(rows, key)) for key, legend in keys]
        series = [s for s in series if s[1]]
        if not series:
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        for legend, steps, values in series:
            axis.plot(steps, values, marker="o" if len(steps) < 40 else None, label=legend)
        if name == "kl" and kl_target is not None:
            axis.axhline(kl_target, linestyle="--", color="grey", label="target")
        coef_steps, coef = _series(rows, "kl/coef")
        if name == "kl" and coef_steps:
            twin = axis.twinx()
            twin.plot(coef_steps, coef, color="tab:red", alpha=0.6, label="β")
            twin.set_ylabel("β (KL coefficient)")
            twin.legend(loc="lower right")
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(label)
        axis.legend(loc="upper left")
        axis.grid(alpha=0.3)
        figure.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written
