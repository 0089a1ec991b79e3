"""Write ``benchmarks/RESULTS.md`` from the JSON files the benchmarks leave.

    python benchmarks/results_md.py [benchmarks/results/dpo.json benchmarks/results/rm.json ...]

Targets (ratios of medians, prefalign over TRL): DPO pairs/s ≥ 2.0× TRL
default cold, ≥ 3.0× with a warm reference cache, ≥ 1.5× TRL at its fastest
settings; DPO peak resident memory ≤ 0.6× TRL default; reward-model pairs/s
≥ 1.5× TRL ``RewardTrainer``; GRPO and RLOO (``grpo.json``, ``rloo.json`` from
``grpo_vs_trl.py``) pairs/s ≥ 1.5× TRL default, ≥ 1.2× TRL at its fastest
settings, peak resident memory ≤ 0.7× TRL default. The memory-scaling figure comes
from ``grpo_memory.json`` (``grpo_memory.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import grpo_memory  # noqa: E402
import grpo_vs_trl  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_INPUTS = [HERE / "results" / f"{name}.json"
                  for name in ("dpo", "rm", "grpo", "rloo", "grpo_memory")]
TITLES = {"dpo": "DPO (sigmoid, β=0.1) vs TRL `DPOTrainer`",
          "rm": "Reward model (Bradley-Terry) vs TRL `RewardTrainer`",
          "grpo": "GRPO (token-level loss) vs TRL `GRPOTrainer`",
          "rloo": "RLOO vs TRL `RLOOTrainer`"}


def _targets(data: dict) -> list[tuple[str, float, str, float]]:
    """(what, measured, comparison, target) of one benchmark."""
    ratios = data["ratios"]
    if data["benchmark"] in grpo_vs_trl.ALGORITHMS:
        ours = [kind for kind in grpo_vs_trl.OURS if f"{kind} vs trl-default" in ratios]
        return [row for kind in ours for row in (
            (f"{kind}: pairs/s vs TRL default", ratios[f"{kind} vs trl-default"]["pairs_per_s"],
             "≥", 1.5),
            (f"{kind}: pairs/s vs TRL fastest", ratios[f"{kind} vs trl-fast"]["pairs_per_s"],
             "≥", 1.2),
            (f"{kind}: peak resident memory vs TRL default",
             ratios[f"{kind} vs trl-default"]["peak_rss"], "≤", 0.7))]
    fastest = next(label for label in ratios if "TRL fastest" in label)
    if data["benchmark"] == "dpo":
        return [("pairs/s, cold, vs TRL default", ratios["prefalign-cold vs trl-default"]
                 ["pairs_per_s"], "≥", 2.0),
                ("pairs/s, warm reference cache, vs TRL default",
                 ratios["prefalign-warm vs trl-default"]["pairs_per_s"], "≥", 3.0),
                ("pairs/s, cold, vs TRL fastest", ratios[fastest]["pairs_per_s"], "≥", 1.5),
                ("peak resident memory, cold, vs TRL default",
                 ratios["prefalign-cold vs trl-default"]["peak_rss"], "≤", 0.6)]
    return [("pairs/s vs TRL RewardTrainer default",
             ratios["prefalign vs trl-default"]["pairs_per_s"], "≥", 1.5),
            ("pairs/s vs TRL RewardTrainer fastest", ratios[fastest]["pairs_per_s"], "≥", 1.5)]


def _target_table(data: dict) -> str:
    rows = []
    for what, value, sense, target in _targets(data):
        met = value >= target if sense == "≥" else value <= target
        rows.append([what, f"{value:.2f}×", f"{sense} {target}×", "met" if met else "missed"])
    return common.markdown_table(["target", "measured", "goal", ""], rows)


def _runs_table(data: dict) -> str:
    rows = [[kind, ", ".join(f"{r['seconds']:.1f}" for r in runs),
             ", ".join(f"{r['peak_rss_mb']:.0f}" for r in runs),
             ", ".join(f"{r['final_loss']:.4f}" for r in runs if r.get("final_loss") is not None)]
            for kind, runs in data["raw"].items()]
    return common.markdown_table(["run", "seconds per repetition", "peak RSS MiB",
                                  "final loss"], rows)


def memory_section(data: dict) -> str:
    """The memory-scaling section: the figure and its table."""
    return "\n".join([
        "## GRPO peak memory against completion length", "",
        f"Command: `{data['command']}` — {data['date']}", "",
        f"One optimizer step of {data['prompts_per_step']} prompts × {data['group']} "
        "completions, every completion forced to the length on the x axis (end-of-sequence "
        f"barred until then), β={data['beta']}, {data['threads']} threads, model "
        f"{data['model']}, one run per kind and length, each in its own process.", "",
        "![peak memory against completion length](results/grpo_memory.png)", "",
        grpo_memory.format_report(data), ""])


def section(data: dict) -> str:
    if data["benchmark"] == "grpo_memory":
        return memory_section(data)
    online = data["benchmark"] in grpo_vs_trl.ALGORITHMS
    if online:
        work = (f"{data['prompts']} prompts ({data['data']}, model {data['model']}), "
                f"{data['steps']} optimizer steps of {data['prompts_per_step']} prompts × "
                f"{data['group']} completions of at most {data['max_new_tokens']} tokens, "
                f"β={data['beta']}")
    else:
        work = (f"{data['pairs']} pairs ({data['data']}), {data['steps']} optimizer steps of "
                f"{data['batch_size']} pairs")
    targets = [_target_table(data), ""] if _targets(data) else []
    tables = grpo_vs_trl.format_report(data) if online else common.format_report(data)
    return "\n".join([
        f"## {TITLES[data['benchmark']]}", "",
        f"Command: `{data['command']}` — {data['date']}", "",
        f"{work}, {data['threads']} threads, median of {data['reps']} "
        f"alternating repetitions, each run in its own process.", "",
        *targets, tables, "",
        "Every repetition:", "", _runs_table(data), ""])


def header(first: dict) -> str:
    machine, versions = first["machine"], first["versions"]
    return "\n".join([
        "# Benchmarks: prefalign vs TRL", "",
        "Generated by `benchmarks/results_md.py` from the JSON files the benchmark scripts "
        "write (`benchmarks/run_all.sh` runs all of them); do not edit by hand. What each "
        "run is, and the FLOP model behind the GFLOP columns, are described "
        "in the docstrings of `dpo_vs_trl.py`, `rm_vs_trl.py`, `grpo_vs_trl.py` and "
        "`common.py`.", "",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
        f"{machine['memory']}, {machine['os']}; load average at the end: "
        f"{machine['load_average']}.", "",
        "Versions: " + ", ".join(f"{name} {v}" for name, v in versions.items()) + ".", "",
        "Ratios are prefalign over TRL (pairs/s, tokens/s: higher is better for prefalign; "
        "peak RSS: lower is better). Tokens are those of prompt+chosen and prompt+rejected, "
        "counted the same way for both sides. GFLOP/pair counts the work each side "
        "executes (padding, repeated prompts, recomputation and reference passes "
        "included); GFLOP/s is that work over the run's time, next to the fp32 matmul rate "
        "measured on the same machine with the same threads.", ""])


def main() -> None:
    inputs = [Path(p) for p in sys.argv[1:]] or DEFAULT_INPUTS
    found = [json.loads(p.read_text()) for p in inputs if p.is_file()]
    if not found:
        raise SystemExit("no results: run benchmarks/run_all.sh first")
    text = header(found[0]) + "\n" + "\n".join(section(data) for data in found)
    (HERE / "RESULTS.md").write_text(text)
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
