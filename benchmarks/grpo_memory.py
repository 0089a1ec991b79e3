"""Peak memory of one GRPO step against completion length: prefalign and TRL.

The runs of ``grpo_vs_trl.py`` (same model, LoRA, prompts, sampling, loss, one
optimizer step of ``--prompts-per-step`` prompts × ``--group`` completions), with
every completion forced to the same length L (the end-of-sequence token barred
until L, on both sides) for L in ``--lengths``; each run is its own process and its
peak resident memory (``ru_maxrss``) is recorded, once per kind and length — peak
memory does not vary between repetitions the way time does. The growth with L is
what a trainer adds per completion token: the KV cache in generation, activations in
the update, and any ``[B, T, V]`` logits tensor (V = 49,152 for the embedded model:
8 × 1,024 × 49,152 fp32 is 1.5 GiB each time one is built).

    python benchmarks/grpo_memory.py [--lengths 128 256 512 1024]

Writes ``benchmarks/results/grpo_memory.json`` and ``grpo_memory.png``;
``results_md.py`` puts both into RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import grpo_vs_trl  # noqa: E402

SCRIPT = grpo_vs_trl.SCRIPT
OUT = Path(__file__).resolve().parent / "results"


def plot(data: dict, path: Path) -> None:
    """Peak resident memory against completion length, one line per run kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, points in data["peak_rss_mb"].items():
        lengths = sorted(int(k) for k in points)
        ax.plot(lengths, [points[str(n)] / 1024 for n in lengths], marker="o", label=kind)
    ax.set_xscale("log", base=2)
    ax.set_xticks(data["lengths"], [str(n) for n in data["lengths"]])
    ax.set_xlabel("completion length (tokens, forced)")
    ax.set_ylabel("peak resident memory (GiB)")
    ax.set_title(f"one GRPO step, {data['prompts_per_step']} prompts × {data['group']} "
                 "completions, LoRA r=16")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_report(data: dict) -> str:
    """The memory table of ``grpo_memory.json`` in markdown, with the prefalign/TRL ratios."""
    kinds = list(data["peak_rss_mb"])
    rows = []
    for n in data["lengths"]:
        peaks = [data["peak_rss_mb"][kind].get(str(n)) for kind in kinds]
        ours = data["peak_rss_mb"]["prefalign"].get(str(n))
        ratios = [f"{ours / p:.2f}×" if ours and p else "–"
                  for kind, p in zip(kinds, peaks) if kind != "prefalign"]
        rows.append([str(n), *(f"{p:.0f}" if p else "failed" for p in peaks), *ratios])
    others = [k for k in kinds if k != "prefalign"]
    return common.markdown_table(
        ["completion tokens", *(f"{k} MiB" for k in kinds),
         *(f"prefalign / {k}" for k in others)], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="embedded",
                        help="'embedded' or a local model directory")
    parser.add_argument("--out", type=Path, default=OUT / "grpo_memory.json")
    args = parser.parse_args()
    peaks: dict[str, dict[str, float]] = {kind: {} for kind in grpo_vs_trl.RUNS}
    seconds: dict[str, dict[str, float]] = {kind: {} for kind in grpo_vs_trl.RUNS}
    data = {"benchmark": "grpo_memory", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": " ".join(["python", str(Path(__file__).resolve().relative_to(
                common.REPO))] + sys.argv[1:]),
            "machine": common.machine(), "versions": common.versions(),
            "model": args.model, "lengths": [],  # those measured so far
            "prompts_per_step": args.prompts_per_step, "group": args.group,
            "beta": args.beta, "threads": args.threads, "peak_rss_mb": peaks,
            "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for length in args.lengths:
            run_args = argparse.Namespace(
                algorithm="grpo", steps=1, prompts_per_step=args.prompts_per_step,
                group=args.group, max_new_tokens=length, min_new_tokens=length,
                beta=args.beta, threads=args.threads, seed=args.seed, model=args.model)
            spec, _ = grpo_vs_trl.build_spec(run_args, work)
            for kind, (side, settings) in grpo_vs_trl.RUNS.items():
                path = work / f"spec-{kind}-{length}.json"
                common.write_json(path, {**spec, **settings})
                try:
                    result = common.run_child(SCRIPT, side, path, args.threads)
                except SystemExit as failure:  # out of memory at this length: recorded
                    print(f"L={length} {kind}: failed: {str(failure)[-300:]}", file=sys.stderr)
                    continue
                peaks[kind][str(length)] = result["peak_rss_mb"]
                seconds[kind][str(length)] = result["seconds"]
                print(f"L={length} {kind}: peak {result['peak_rss_mb']:.0f} MiB, "
                      f"{result['seconds']:.1f} s, {result['completion_tokens']} completion "
                      "tokens", file=sys.stderr, flush=True)
            data["lengths"].append(length)  # each finished length is kept if stopped
            common.write_json(args.out, data)
            plot(data, args.out.with_suffix(".png"))
    print(format_report(data))


if __name__ == "__main__":
    main()
