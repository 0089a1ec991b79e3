"""Agent results: per agent, task set and category, both scores with 95% intervals;
the memory figure (answer score against hops, one line per memory).

An interval is Wilson's when every score of the group is 0 or 1 (a pass rate),
else the t-interval of the mean clipped to [0, 1] (token F1, share of tests).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from prefalign.intervals import t_interval, wilson_interval


def interval(scores: list[float]) -> tuple[float, float]:
    if all(s in (0.0, 1.0) for s in scores):
        return wilson_interval(sum(scores), len(scores))
    found = t_interval(scores)
    if found is None:
        return scores[0], scores[0]
    return max(0.0, found[0]), min(1.0, found[1])


def _stat(scores: list[float]) -> dict:
    low, high = interval(scores)
    return {"mean": math.fsum(scores) / len(scores), "low": low, "high": high}


def summarize(records: list[dict]) -> list[dict]:
    """One row per (agent, memory, model, task set, category), then per set ("all")."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        base = (record["agent"], record["memory"], record["model"], record["task_set"])
        groups[(*base, record["category"])].append(record)
        groups[(*base, "all")].append(record)
    rows = []
    for (agent, memory, model, task_set, category), members in sorted(groups.items()):
        rows.append({"agent": agent, "memory": memory, "model": model, "task_set": task_set,
                     "category": category, "n": len(members),
                     "answer": _stat([m["answer_score"] for m in members]),
                     "sequence": _stat([m["sequence_score"] for m in members]),
                     "seconds": math.fsum(m["seconds"] for m in members) / len(members),
                     "tokens": sum(m.get("prompt_tokens", 0) + m.get("completion_tokens", 0)
                                   for m in members) / len(members)})
    return rows


def _cell(stat: dict) -> str:
    return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def markdown(rows: list[dict]) -> str:
    lines = ["| agent | memory | model | task set | category | n | answer [95%] | "
             "sequence [95%] | s/task | tokens/task |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['agent']} | {r['memory']} | {r['model']} | {r['task_set']} | "
                     f"{r['category']} | {r['n']} | {_cell(r['answer'])} | "
                     f"{_cell(r['sequence'])} | {r['seconds']:.1f} | {r['tokens']:.0f} |")
    return "\n".join(lines) + "\n"


def write_report(records: list[dict], out: Path) -> dict[str, Path]:
    """``report.json`` and ``report.md`` in ``out``."""
    rows = summarize(records)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps({"rows": rows}, indent=2))
    paths["markdown"].write_text("# Agent evaluation\n\nAnswer and sequence scores, mean "
                                 "[95% interval: Wilson for pass rates, t otherwise].\n\n"
                                 + markdown(rows))
    return paths


def memory_figure(records: list[dict], path: Path) -> Path:
    """Answer score against hops (``level`` of the chain tasks), a line per memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_memory: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    several_models = len({record["model"] for record in records}) > 1
    for record in records:
        label = f"{record['agent']} / {record['memory']}"
        if several_models:
            label += f" / {Path(record['model']).parent.name or record['model']}"
        by_memory[label][record["level"]].append(record["answer_score"])
    fig, axis = plt.subplots(figsize=(5.5, 3.8))
    lines = sorted(by_memory.items())
    for index, (label, levels) in enumerate(lines):
        hops = sorted(levels)
        stats = [_stat(levels[h]) for h in hops]
        dodge = 0.08 * (index - (len(lines) - 1) / 2)  # lines at equal scores stay visible
        axis.errorbar([h + dodge for h in hops], [s["mean"] for s in stats],
                      yerr=[[s["mean"] - s["low"] for s in stats],
                            [s["high"] - s["mean"] for s in stats]],
                      marker="o", capsize=3, label=label)
    axis.set_xlabel("hops")
    axis.set_ylabel("answer accuracy (95% Wilson)")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
