"""Shared pieces of the side-by-side benchmarks against TRL.

* the preference pairs both sides train on, as token ids (so both see exactly
  the same tokens): real hh-rlhf pairs from ``../shared/data`` cut to the
  benchmark's shape, or a generated set of that shape when the data is absent;
* each measured run in its own child process (``run_child``), with the thread
  count fixed through the environment and ``torch.set_num_threads``, reporting
  its wall time and its peak resident memory (``ru_maxrss``);
* the machine's fp32 matmul rate and an analytic FLOP model, so achieved
  FLOP/s can be put next to the hardware limit;
* medians over repetitions and markdown tables.

FLOP model (multiply-add = 2 FLOPs; ``N`` = parameters of the decoder's linear
layers, ``H`` hidden size, ``V`` vocabulary, ``L`` layers, ``T`` padded row
length, ``n`` tokens in a forward pass, ``r`` LoRA rank):

* forward: ``2·N·n`` (linear layers) + ``2·Σ r·(in+out)·n`` (LoRA) +
  ``4·L·H·T·n`` (attention scores and weighted values, dense: a custom or
  padding mask makes sdpa compute every query-key pair) + ``2·H·V`` per
  position that goes through the LM head;
* backward with frozen base weights: gradients with respect to activations
  only, ``2·N·n``, plus LoRA activation and weight gradients ``4·Σ r·(in+out)·n``,
  attention ``8·L·H·T·n``, and ``2·H·V`` per head position (TRL's chunked head
  recomputes its logits in the backward: another ``2·H·V``);
* activation checkpointing recomputes the decoder forward (not the head);
* a reference pass is a forward without backward.

Counts are of executed work: padding, repeated prompts and head positions that
are thrown away count, so two implementations doing the same training at
different cost show different FLOP totals.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HH_PAIRS = REPO.parent / "shared" / "data" / "hh-rlhf-harmless" / "pairs.jsonl"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PROMPT_TOKENS = (100, 150)
COMPLETION_TOKENS = (30, 60)


# -- data ---------------------------------------------------------------------------
def _cut(rng: random.Random, prompt: list[int], chosen: list[int],
         rejected: list[int]) -> dict | None:
    """The pair cut to a prompt of 100–150 tokens (its end) and completions of 30–60
    (their start); None when it is too short for that or the cut makes the two equal."""
    p_len = rng.randint(*PROMPT_TOKENS)
    c_len, r_len = rng.randint(*COMPLETION_TOKENS), rng.randint(*COMPLETION_TOKENS)
    if len(prompt) < p_len or len(chosen) < COMPLETION_TOKENS[0] or \
            len(rejected) < COMPLETION_TOKENS[0]:
        return None
    pair = {"prompt_ids": prompt[-p_len:], "chosen_ids": chosen[:c_len],
            "rejected_ids": rejected[:r_len]}
    return None if pair["chosen_ids"] == pair["rejected_ids"] else pair


def hh_pairs(tokenizer, count: int, seed: int, path: Path = HH_PAIRS) -> list[dict]:
    """``count`` hh-rlhf pairs rendered with the chat template and cut to the benchmark shape."""
    from prefalign.data.convert import hh_to_preference
    from prefalign.data.schema import UnusableRecord
    from prefalign.data.tokenize import encode_preference

    rng = random.Random(seed)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rng.shuffle(rows)
    pairs = []
    for row in rows:
        try:
            example = encode_preference(hh_to_preference(row), tokenizer)
        except UnusableRecord:
            continue
        pair = _cut(rng, example["prompt_ids"], example["chosen_ids"], example["rejected_ids"])
        if pair is not None:
            pairs.append(pair)
        if len(pairs) == count:
            return pairs
    raise SystemExit(f"{path} has only {len(pairs)} pairs of the benchmark shape; "
                     f"ask for fewer or use --generated")


def generated_pairs(vocab_size: int, count: int, seed: int) -> list[dict]:
    """``count`` pairs of random token ids with the benchmark's lengths."""
    rng = random.Random(seed)

    def draw(low: int, high: int) -> list[int]:
        return [rng.randrange(vocab_size) for _ in range(rng.randint(low, high))]

    return [{"prompt_ids": draw(*PROMPT_TOKENS), "chosen_ids": draw(*COMPLETION_TOKENS),
             "rejected_ids": draw(*COMPLETION_TOKENS)} for _ in range(count)]


def benchmark_pairs(count: int, seed: int, generated: bool) -> tuple[list[dict], str]:
    """The pairs and a description of where they came from."""
    from prefalign.models.load import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    if not generated and HH_PAIRS.is_file():
        return hh_pairs(tokenizer, count, seed), f"hh-rlhf harmless ({HH_PAIRS.name}), cut"
    return generated_pairs(len(tokenizer), count, seed), "generated token ids"


def logical_tokens(pair: dict) -> int:
    """Tokens of prompt+chosen and prompt+rejected: the same count for every layout."""
    return 2 * len(pair["prompt_ids"]) + len(pair["chosen_ids"]) + len(pair["rejected_ids"])


def write_pairs(path: Path, pairs: list[dict]) -> None:
    path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))


def read_pairs(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def fresh_cache(path: Path) -> Path:
    """A prefalign cache at ``path`` with the user's models but no reference log-probs."""
    from prefalign.models.embedded import models_cache_dir

    path.mkdir(parents=True)
    (path / "models").symlink_to(models_cache_dir().resolve())
    return path


# -- child processes -----------------------------------------------------------------
def child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
               TRANSFORMERS_VERBOSITY="error", HF_DATASETS_DISABLE_PROGRESS_BARS="1",
               PYTHONWARNINGS="ignore")
    env.update(extra or {})
    return env


def run_child(script: Path, mode: str, spec_path: Path, threads: int,
              env: dict[str, str] | None = None) -> dict:
    """Run ``script --child MODE SPEC`` and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, str(script), "--child", mode, str(spec_path)],
                          capture_output=True, text=True, env=child_env(threads, env))
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(children: dict, mode: str, spec_path: str) -> None:
    """Entry point of a child process: ``matmul`` or one of ``children``."""
    spec = json.loads(Path(spec_path).read_text())
    if mode == "matmul":
        emit({"flops": matmul_rate(spec["threads"])})
    elif mode in children:
        emit(children[mode](spec))
    else:
        raise SystemExit(f"unknown child mode {mode!r}")


def alternate(kinds: dict, reps: int, run) -> dict[str, list[dict]]:
    """``run(kind, rep)`` for every kind, ``reps`` times, in an order rotated each time."""
    names = list(kinds)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            result = run(name, rep)
            results[name].append(result)
            print(f"rep {rep + 1}/{reps} {name}: {result['seconds']:.1f} s, peak "
                  f"{result['peak_rss_mb']:.0f} MiB", file=sys.stderr, flush=True)
    return results


def record_passes(module, records: list[dict], head_positions) -> None:
    """Record rows, padded length, LM-head positions and grad mode of every forward."""
    import torch

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        records.append({"rows": ids.shape[0], "length": ids.shape[1],
                        "head": head_positions(ids, args, kwargs),
                        "grad": torch.is_grad_enabled()})

    module.register_forward_pre_hook(hook, with_kwargs=True)


def prefalign_start(spec: dict):
    """A prefalign child's start: torch threads, the pairs, the seed, and the embedded model
    in float32 with LoRA rank r, alpha 2r, no dropout, on q/k/v/o. Returns
    ``(pairs, causal_lm, tokenizer)``."""
    import torch

    torch.set_num_threads(spec["threads"])
    from prefalign.engine.loop import seed_everything
    from prefalign.models.load import load_model
    from prefalign.models.lora import LoraSettings

    pairs = read_pairs(spec["pairs"])
    seed_everything(spec["seed"])
    lora = LoraSettings(r=spec["lora_rank"], alpha=2 * spec["lora_rank"], dropout=0.0,
                        target_modules=LORA_TARGETS)
    return (pairs, *load_model("embedded", dtype="float32", lora=lora))


def prefalign_train(model, algorithm, spec: dict, micro: int) -> dict:
    """Train ``steps`` optimizer steps of ``batch_size`` pairs as micro-batches of ``micro``
    (linear decay without warmup, no checkpoints) in a temporary run directory; returns
    the child's common figures: peak memory and the final loss."""
    from prefalign.config import TrainConfig
    from prefalign.engine.loop import Engine
    from prefalign.engine.rundir import RunDir

    train_cfg = TrainConfig(lr=spec["lr"], max_steps=spec["steps"], batch_size=micro,
                            grad_accum=spec["batch_size"] // micro, scheduler="linear",
                            warmup_ratio=0.0, save_every=0, seed=spec["seed"],
                            threads=spec["threads"])
    with tempfile.TemporaryDirectory() as out:
        result = Engine(model, algorithm, train_cfg, RunDir(Path(out) / "run").create()).train()
    return {"peak_rss_mb": peak_rss_mb(), "checkpointing": False, "head_recompute": False,
            "final_loss": result.last_metrics.get("loss")}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict) -> None:
    """Print a child's result as the last line of its output."""
    print(json.dumps(result), flush=True)


# -- hardware limit -------------------------------------------------------------------
def matmul_rate(threads: int, size: int = 1536, seconds: float = 3.0) -> float:
    """Best fp32 FLOP/s of ``size³`` matrix products over about ``seconds`` seconds."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - started))
    return best


# -- FLOP model -------------------------------------------------------------------------
@dataclass
class TransformerShape:
    """What the FLOP model needs to know about a decoder-only model with LoRA adapters."""

    hidden: int
    layers: int
    vocab: int
    linear_params: int  # weights of every decoder linear layer (all layers)
    lora_params: int  # Σ r·(in + out) over adapted layers (all layers)

    @classmethod
    def from_config(cls, config, lora_rank: int,
                    lora_targets: list[str] = LORA_TARGETS) -> TransformerShape:
        h, inter = config.hidden_size, config.intermediate_size
        kv = config.num_key_value_heads * (h // config.num_attention_heads)
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
        per_layer = sum(i * o for i, o in shapes.values())
        lora = sum(lora_rank * (shapes[t][0] + shapes[t][1]) for t in lora_targets)
        return cls(h, config.num_hidden_layers, config.vocab_size,
                   per_layer * config.num_hidden_layers, lora * config.num_hidden_layers)

    def decoder_forward(self, rows: int, length: int) -> float:
        tokens = rows * length
        return (2 * self.linear_params * tokens + 2 * self.lora_params * tokens
                + 4 * self.layers * self.hidden * length * tokens)

    def decoder_backward(self, rows: int, length: int) -> float:
        tokens = rows * length
        return (2 * self.linear_params * tokens + 4 * self.lora_params * tokens
                + 8 * self.layers * self.hidden * length * tokens)

    def head(self, positions: int) -> float:
        return 2 * self.hidden * self.vocab * positions


def pass_flops(shape: TransformerShape, record: dict, checkpointing: bool,
               head_recompute: bool) -> float:
    """Executed FLOPs of one recorded forward pass (and its backward when it had one).

    ``record``: ``rows``, ``length`` (padded), ``head`` (positions through the LM
    head) and ``grad`` (whether a backward followed).
    """
    rows, length, head = record["rows"], record["length"], record["head"]
    flops = shape.decoder_forward(rows, length) + shape.head(head)
    if record["grad"]:
        flops += shape.decoder_backward(rows, length) + shape.head(head)
        if checkpointing:
            flops += shape.decoder_forward(rows, length)
        if head_recompute:
            flops += shape.head(head)
    return flops


# -- set-up and results -------------------------------------------------------------------
@dataclass
class Setup:
    """What every run of one benchmark shares."""

    pairs: list[dict]
    source: str
    shape: TransformerShape
    peak_flops: float
    args: object

    def spec(self, work: Path, **extra) -> dict:
        """The child spec: pairs written to ``work``, the training settings, ``extra``."""
        path = work / "pairs.jsonl"
        write_pairs(path, self.pairs)
        from prefalign.models.embedded import embedded_path

        return {"pairs": str(path), "steps": self.args.steps,
                "batch_size": self.args.batch_size, "threads": self.args.threads,
                "seed": self.args.seed, "lr": 5e-5, "lora_rank": 16,
                "model_path": str(embedded_path()), **extra}


def add_arguments(parser, default_out: Path) -> None:
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--reps", type=int, default=3, help="runs of each kind")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generated", action="store_true",
                        help="generated token ids instead of hh-rlhf pairs")
    parser.add_argument("--out", type=Path, default=default_out, help="JSON results file")


def prepare(args, script: Path) -> Setup:
    """The pairs (steps × batch), the model shape and the matmul rate, measured by
    ``script --child matmul``."""
    from transformers import AutoConfig

    from prefalign.models.embedded import embedded_path

    pairs, source = benchmark_pairs(args.steps * args.batch_size, args.seed, args.generated)
    shape = TransformerShape.from_config(AutoConfig.from_pretrained(embedded_path()),
                                         lora_rank=16)
    return Setup(pairs, source, shape, measure_matmul(script, args.threads), args)


def measure_matmul(script: Path, threads: int) -> float:
    """The machine's fp32 matmul rate in FLOP/s, measured by ``script --child matmul``."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "matmul.json"
        write_json(spec, {"threads": threads})
        return run_child(script, "matmul", spec, threads)["flops"]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarise(results: list[dict], pairs: list[dict], shape: TransformerShape,
              peak_flops: float) -> dict:
    """Medians over the runs of one kind: throughput, memory, FLOPs."""
    count = len(pairs)
    tokens = sum(logical_tokens(p) for p in pairs)
    seconds = [r["seconds"] for r in results]
    flops = [sum(pass_flops(shape, rec, r["checkpointing"], r["head_recompute"])
                 for rec in r["passes"]) for r in results]
    rate = [f / s for f, s in zip(flops, seconds)]
    return {"runs": len(results), "seconds": median(seconds),
            "pairs_per_s": median([count / s for s in seconds]),
            "tokens_per_s": median([tokens / s for s in seconds]),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in results]),
            "reference_s": median([r["reference_s"] for r in results]),
            "gflop_per_pair": median(flops) / count / 1e9,
            "gflops": median(rate) / 1e9, "fraction_of_peak": median(rate) / peak_flops,
            "final_loss": [r["final_loss"] for r in results]}


def report(name: str, script: Path, setup: Setup, args, summary: dict,
           comparisons: dict[str, tuple[str, str]], raw: dict) -> dict:
    """Everything a results page needs, JSON-ready."""
    ratios = {}
    for label, (ours, theirs) in comparisons.items():
        a, b = summary[ours], summary[theirs]
        ratios[label] = {"pairs_per_s": a["pairs_per_s"] / b["pairs_per_s"],
                         "tokens_per_s": a["tokens_per_s"] / b["tokens_per_s"],
                         "peak_rss": a["peak_rss_mb"] / b["peak_rss_mb"]}
    return {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": " ".join(["python", str(script.relative_to(REPO))] + sys.argv[1:]),
            "machine": machine(), "versions": versions(),
            "matmul_gflops": setup.peak_flops / 1e9, "data": setup.source,
            "pairs": len(setup.pairs), "steps": args.steps, "batch_size": args.batch_size,
            "threads": args.threads, "reps": args.reps, "summary": summary, "ratios": ratios,
            "raw": raw}


def format_report(data: dict) -> str:
    """The summary and ratio tables of one benchmark, in markdown."""
    rows = [[kind, f"{s['pairs_per_s']:.3f}", f"{s['tokens_per_s']:.0f}",
             f"{s['peak_rss_mb']:.0f}", f"{s['reference_s']:.1f}", f"{s['gflop_per_pair']:.0f}",
             f"{s['gflops']:.1f}", f"{100 * s['fraction_of_peak']:.0f}%"]
            for kind, s in data["summary"].items()]
    table = markdown_table(["run", "pairs/s", "tokens/s", "peak RSS MiB", "reference s",
                            "GFLOP/pair", "GFLOP/s", "of matmul peak"], rows)
    ratios = markdown_table(
        ["comparison", "pairs/s", "tokens/s", "peak RSS"],
        [[label, f"{r['pairs_per_s']:.2f}×", f"{r['tokens_per_s']:.2f}×", f"{r['peak_rss']:.2f}×"]
         for label, r in data["ratios"].items()])
    return (f"{table}\n\n{ratios}\n\nfp32 matmul rate of this machine "
            f"({data['threads']} threads): {data['matmul_gflops']:.1f} GFLOP/s")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "prefalign"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split()[1])
        memory = f"{total_kb / 1024 ** 2:.1f} GiB"
    return {"cpu": cpu, "logical_cpus": str(os.cpu_count()), "memory": memory,
            "os": platform.platform(), "load_average": " ".join(f"{x:.2f}" for x in
                                                                os.getloadavg())}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
