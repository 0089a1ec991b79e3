"""Success against the number of demonstrations: SFT, SFT + DPO, SFT + online RL.

Reads finished MiniGrid pipeline runs that differ in ``data.demo_episodes`` (the
demonstrated episodes per environment; everything else equal) and draws the
held-out closed-loop success of each policy against it, with 95% Wilson
intervals, into one figure; the points also go to a JSON file beside it.

    python -m prefalign.pipeline.minigrid.learning_curve runs/a runs/b runs/c \\
        --out runs/learning_curve.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import PrefalignError
from prefalign.pipeline.minigrid.figures import _pyplot, _save

LABELS = {"sft": "SFT", "dpo": "SFT + DPO (on-policy pairs)", "rl": "SFT + multi-turn GRPO",
          "dpo_best_of_n": "SFT + DPO + best-of-n"}


def curve_points(run_dirs: list[Path]) -> dict[str, list[dict]]:
    """``{policy: [{"demos", "rate", "ci95", "k", "n", "run"}, ...]}`` sorted by demos."""
    points: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        summary_path, config_path = run_dir / "eval" / "summary.json", run_dir / "config.yaml"
        if not summary_path.is_file() or not config_path.is_file():
            raise PrefalignError(f"{run_dir}: not a finished MiniGrid pipeline run "
                                 "(no eval/summary.json or config.yaml)")
        config = yaml.safe_load(config_path.read_text())
        demos = config["data"].get("demo_episodes") or config["data"]["train_seeds"]
        summary = json.loads(summary_path.read_text())
        for policy, values in summary["policies"].items():
            success = values["overall"]["closed_loop_success"]
            points.setdefault(policy, []).append({"demos": demos, **success,
                                                  "run": str(run_dir)})
    for rows in points.values():
        rows.sort(key=lambda row: row["demos"])
    return points


def plot_learning_curve(points: dict[str, list[dict]], path: str | Path) -> Path:
    """One line per policy: success (95% Wilson interval) against demonstrations."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for policy, rows in points.items():
        xs = [row["demos"] for row in rows]
        rates = [row["rate"] or 0.0 for row in rows]
        low = [max(rate - row["ci95"][0], 0.0) for rate, row in zip(rates, rows)]
        high = [max(row["ci95"][1] - rate, 0.0) for rate, row in zip(rates, rows)]
        ax.errorbar(xs, rates, yerr=[low, high], marker="o", capsize=3,
                    label=LABELS.get(policy, policy))
    ax.set_xscale("log", base=2)
    demos = sorted({row["demos"] for rows in points.values() for row in rows})
    ax.set_xticks(demos, [str(d) for d in demos])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("demonstrated episodes per training environment")
    ax.set_ylabel("held-out closed-loop success (95% Wilson CI)")
    ax.set_title("Learning curve: what preferences add to scarce demonstrations")
    ax.legend(fontsize="small")
    return _save(fig, Path(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished pipeline run directories")
    parser.add_argument("--out", type=Path, required=True, help="the figure (.png); the "
                        "points go to the same name with .json")
    args = parser.parse_args(argv)
    points = curve_points(args.runs)
    atomic_write_json(args.out.with_suffix(".json"), points)
    print(plot_learning_curve(points, args.out))


if __name__ == "__main__":
    main()
