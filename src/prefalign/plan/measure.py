"""Check the planner against reality: run a few real steps, compare the peaks.

Each case runs the real stage (``run_sft`` / ``run_preference``) in a fresh
subprocess (``probe.py``) on synthetic records whose token lengths are exact:
every prompt and completion is a run of words that the model's tokenizer
encodes as one token each, so every micro-batch has the same shape, and the
plan is made for exactly that shape. The measured figure is the peak resident
set size over steps 2 … k minus the resident size before the model was loaded
(the interpreter and libraries), the counterpart of the plan, which leaves
out the runtime itself.

The CPU allocator matters to what "peak" means. glibc serves a freed
allocation's pages back to the OS only if the allocation was mmapped, and
its mmap threshold grows to the size of the largest freed block (up to
32 MiB), after which most activation tensors come from the heap, whose freed
pages stay resident. ``allocator="live"`` fixes the threshold at 64 KiB
(``MALLOC_MMAP_THRESHOLD_=65536``), so RSS follows the memory tensors
actually hold — the analogue of ``torch.cuda.max_memory_allocated`` on a GPU;
``allocator="glibc"`` measures the process as it runs by default, slack
included.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefalign.errors import PrefalignError
from prefalign.plan.planner import PlanRequest, plan_memory
from prefalign.plan.shape import load_shape

ALLOCATORS = {"live": {"MALLOC_MMAP_THRESHOLD_": "65536"}, "glibc": {}}
_WORDS = ["the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get", "come", "made", "may", "part"]


@dataclass(frozen=True)
class MeasureCase:
    """One measured job: stage (``sft``/``dpo``), ``full``/``lora``, the micro-batch
    (``batch_size`` examples of ``prompt_words`` + ``completion_words`` words)."""

    stage: str = "sft"
    method: str = "lora"
    batch_size: int = 4
    prompt_words: int = 64
    completion_words: int = 64
    steps: int = 3
    model: str = "embedded"
    lora_r: int = 16
    threads: int = 1


@dataclass
class Measurement:
    """A measured peak and the plan for the same micro-batch (``rows × row_len``)."""

    case: MeasureCase
    allocator: str
    rows: int
    row_len: int
    completion_tokens: int
    baseline: float
    peak: float
    planned: float

    @property
    def measured(self) -> float:
        return self.peak - self.baseline

    @property
    def error(self) -> float:
        """``planned / measured − 1``: positive when the plan is above the measurement."""
        return self.planned / self.measured - 1


def single_token_words(tokenizer) -> list[str]:
    words = [w for w in _WORDS if len(tokenizer.encode(" " + w, add_special_tokens=False)) == 1]
    if len(words) < 10:
        raise PrefalignError("the tokenizer splits too many common words to build exact-length "
                             "synthetic data")
    return words


def synthetic_records(case: MeasureCase, words: list[str], count: int) -> list[dict]:
    rng = random.Random(0)
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))
    if case.stage == "sft":
        return [{"prompt": text(case.prompt_words), "completion": text(case.completion_words)}
                for _ in range(count)]
    return [{"prompt": text(case.prompt_words), "chosen": text(case.completion_words),
             "rejected": text(case.completion_words)} for _ in range(count)]


def _lengths(case: MeasureCase, tokenizer, record: dict, limits: dict) -> tuple[int, int]:
    """Padded row length and scored tokens per row of the encoded synthetic example."""
    from prefalign.data.tokenize import encode_preference, encode_sft

    if case.stage == "sft":
        example = encode_sft(record, tokenizer, **limits)
        return len(example["input_ids"]), sum(1 for t in example["labels"] if t != -100)
    example = encode_preference(record, tokenizer, **limits)
    completion = max(len(example["chosen_ids"]), len(example["rejected_ids"]))
    return len(example["prompt_ids"]) + completion, completion


def stage_config(case: MeasureCase, data_file: Path, runs: Path, limits: dict) -> dict:
    lora = {"r": case.lora_r, "alpha": 2 * case.lora_r} if case.method == "lora" else None
    return {
        "name": f"measure-{case.stage}-{case.method}", "output_dir": str(runs),
        "model": {"name": case.model, "lora": lora},
        "data": {"train": str(data_file), "eval_fraction": 0.0, **limits},
        "train": {"max_steps": case.steps, "batch_size": case.batch_size,
                  "threads": case.threads, "save_every": 0, "eval_every": 0},
    }


def run_probe(stage: str, config: dict, allocator: str) -> dict:
    """Run ``probe.py`` in a fresh interpreter; its JSON report."""
    env = {**os.environ, **ALLOCATORS[allocator]}
    spec = json.dumps({"stage": stage, "config": config})
    done = subprocess.run([sys.executable, "-m", "prefalign.plan.probe", spec], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise PrefalignError(f"the measured run failed ({config['name']}): {tail[0]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["peak"] is None:
        raise PrefalignError("the measured run stopped before step 2; use steps >= 2")
    return report


def measure(case: MeasureCase, allocator: str = "live",
            workdir: Path | None = None) -> Measurement:
    """Run ``case`` for real and plan it; both peaks, in bytes."""
    from prefalign.models.load import load_tokenizer

    if allocator not in ALLOCATORS:
        raise PrefalignError(f"unknown allocator '{allocator}'; valid: {', '.join(ALLOCATORS)}")
    if case.stage not in ("sft", "dpo") or case.method not in ("full", "lora"):
        raise PrefalignError("measurement covers stage sft or dpo, method full or lora")
    tokenizer = load_tokenizer(case.model)
    records = synthetic_records(case, single_token_words(tokenizer),
                                case.batch_size * case.steps)
    words = case.prompt_words + case.completion_words
    limits = {"max_length": words + 128, "max_prompt_length": case.prompt_words + 64}
    seq_len, completion = _lengths(case, tokenizer, records[0], limits)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records))
        report = run_probe(case.stage, stage_config(case, data, Path(tmp) / "runs", limits),
                           allocator)
    request = PlanRequest(stage=case.stage, method=case.method, precision="fp32",
                          batch_size=case.batch_size, seq_len=seq_len,
                          completion_len=completion, lora_r=case.lora_r)
    planned = plan_memory(load_shape(case.model), request).total
    batch = request.batch
    return Measurement(case, allocator, batch.rows, batch.row_len, batch.completion_tokens,
                       report["baseline"], report["peak"], planned)


def markdown_table(rows: list[Measurement]) -> str:
    """The comparison as a Markdown table (MB = 10⁶ bytes)."""
    lines = ["| stage | method | micro-batch | allocator | measured peak | plan | plan vs measured |",
             "|---|---|---|---|---:|---:|---:|"]
    for m in rows:
        c = m.case
        lines.append(f"| {c.stage} | {c.method} | {m.rows} rows × {m.row_len} tokens "
                     f"({m.completion_tokens} scored) | {m.allocator} | "
                     f"{m.measured / 1e6:,.0f} MB | {m.planned / 1e6:,.0f} MB | "
                     f"{m.error:+.1%} |")
    return "\n".join(lines)
