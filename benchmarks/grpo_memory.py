"""Peak memory of one GRPO step against completion length: prefalign and TRL.

The runs of ``grpo_vs_trl.py`` (same model, LoRA, prompts, sampling, loss, one
optimizer step of ``--prompts-per-step`` prompts × ``--group`` completions), with
every completion forced to the same length L (the end-of-sequence token barred
until L, on both sides) for L in ``--lengths``; each run is its own process and its
peak resident memory (``ru_maxrss``) is recorded, once per kind and length — peak
memory does not vary between repetitions the way time does. The kinds are those of
``grpo_vs_trl.py`` and ``prefalign-checkpointing`` (``model.gradient_checkpointing=true``,
prefix sharing kept), to set like for like against TRL's default, which checkpoints;
``--kinds`` measures some of them again and keeps the others' figures from ``--out``
when its settings match. The growth with L is
what a trainer adds per completion token: the KV cache in generation, activations in
the update, and any ``[B, T, V]`` logits tensor (V = 49,152 for the embedded model:
8 × 1,024 × 49,152 fp32 is 1.5 GiB each time one is built).

    python benchmarks/grpo_memory.py [--lengths 128 256 512 1024] [--kinds KIND ...]

Writes ``benchmarks/results/grpo_memory.json`` and ``grpo_memory.png``;
``results_md.py`` puts both into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import grpo_vs_trl  # noqa: E402

SCRIPT = grpo_vs_trl.SCRIPT
OUT = Path(__file__).resolve().parent / "results"
RUNS = {**grpo_vs_trl.RUNS, "prefalign-checkpointing": ("prefalign", {"checkpointing": True})}
SETTINGS = ("model", "prompts_per_step", "group", "beta", "threads")


def plot(data: dict, path: Path) -> None:
    """Peak resident memory against completion length, one line per run kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, points in ((k, v) for k, v in data["peak_rss_mb"].items() if v):
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
    """The memory table of ``grpo_memory.json`` in markdown, with each prefalign kind's
    ratio to each TRL kind."""
    peaks = data["peak_rss_mb"]
    kinds = [kind for kind in peaks if peaks[kind]]  # a kind not measured has no column
    pairs = [(ours, theirs) for ours in kinds if ours.startswith("prefalign")
             for theirs in kinds if theirs.startswith("trl")]
    rows = []
    for n in data["lengths"]:
        cells = [peaks[kind].get(str(n)) for kind in kinds]
        ratios = [f"{peaks[ours][str(n)] / peaks[theirs][str(n)]:.2f}×"
                  if peaks[ours].get(str(n)) and peaks[theirs].get(str(n)) else "–"
                  for ours, theirs in pairs]
        rows.append([str(n), *(f"{p:.0f}" if p else "failed" for p in cells), *ratios])
    return common.markdown_table(
        ["completion tokens", *(f"{k} MiB" for k in kinds),
         *(f"{ours} / {theirs}" for ours, theirs in pairs)], rows)


def previous_figures(path: Path, settings: dict) -> dict:
    """The figures of an earlier run at ``path`` with the same settings, else empty."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    if any(earlier.get(key) != settings[key] for key in SETTINGS):
        return {}
    return earlier


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
    parser.add_argument("--kinds", nargs="+", choices=list(RUNS), default=list(RUNS),
                        help="kinds to measure; the others keep their figures from --out")
    parser.add_argument("--out", type=Path, default=OUT / "grpo_memory.json")
    args = parser.parse_args()
    earlier = previous_figures(args.out, vars(args))
    peaks = {kind: {} if kind in args.kinds else earlier.get("peak_rss_mb", {}).get(kind, {})
             for kind in RUNS}
    seconds = {kind: {} if kind in args.kinds else earlier.get("seconds", {}).get(kind, {})
               for kind in RUNS}
    command = " ".join(["python", str(Path(__file__).resolve().relative_to(common.REPO))]
                       + sys.argv[1:])
    if any(peaks[kind] for kind in RUNS if kind not in args.kinds):  # figures kept
        command = f"{earlier['command']}, then {command}"
    data = {"benchmark": "grpo_memory", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": command,
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
            for kind in args.kinds:
                side, settings = RUNS[kind]
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
