"""Fault soak: kill SFT, DPO and GRPO runs with SIGKILL at random moments, resume each
time, and check that the result equals an uninterrupted run.

For each stage, on a tiny random model (``prefalign.models.tiny``) and built-in
arithmetic data, with a checkpoint after every step:

1. an uninterrupted run (``ref``);
2. a run killed ``--kills`` times: started (then resumed with ``--resume``) as its own
   process group, it is sent SIGKILL after a random delay (seeded) drawn so that
   kills land while the model loads, during steps, during checkpoint writes and (for
   GRPO) during generation; the last line of its log before each kill says where it
   was; then it runs to the end;
3. the two runs' final trainable weights (max |difference|) and every logged metric
   but the timings are compared: equal within ``--tolerance`` (1e-6) or the soak fails.

    python scripts/soak.py                       # sft, dpo, grpo; 10 kills each
    python scripts/soak.py --stages grpo --kills 3 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from prefalign.models.tiny import save_tiny_model

DATA = "builtin:arithmetic?n=48&seed=0"
COMMON = ["train.save_every=1", "train.threads=1", "train.seed=0"]
STAGES = {
    "sft": ["sft", "data.train=builtin:arithmetic?n=48&seed=0", "train.max_steps=240",
            "train.batch_size=4", "train.eval_every=0", "model.lora.r=4"],
    "dpo": ["dpo", f"data.train={DATA}", "train.max_steps=240", "train.batch_size=4",
            "train.eval_every=0", "model.lora.r=4", "reference.precompute=false"],
    "grpo": ["grpo", f"data.train={DATA}",
             "rewards=[{name: length_gate, params: {max_words: 1, mode: continuous}}]",
             "rollout.max_new_tokens=12", "rollout.prompts_per_rollout=2",
             "rollout.num_samples=2", "train.batch_size=2", "train.grad_accum=2",
             "train.max_steps=60", "train.eval_every=0", "eval.prompts=2", "model.lora.r=4"],
}
TIMING = {"tokens_per_s", "step_time_s"}
STEP = re.compile(r"step \d+/\d+")


def command(stage: str, model: Path, out: Path, name: str, resume: bool) -> list[str]:
    head, *overrides = STAGES[stage]
    return [sys.executable, "-m", "prefalign", head, *(["--resume"] if resume else []),
            f"model.name={model}", *overrides, *COMMON, f"output_dir={out}", f"name={name}"]


def has_checkpoint(run: Path) -> bool:
    return any((run / "checkpoints").glob("step-*"))


def run_to_end(cmd: list[str], log: Path) -> int:
    with log.open("a") as sink:
        return subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT).returncode


def _new_lines(log: Path, offset: int) -> list[str]:
    text = log.read_bytes()[offset:].decode(errors="replace")
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


def _wait_for_training(process: subprocess.Popen, log: Path, offset: int,
                       limit: float) -> bool:
    """Poll the run's new output until a training step is reported (or it exits)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if any(STEP.search(line) for line in _new_lines(log, offset)):
            return True
        time.sleep(0.02)
    return False


def killed_run(stage: str, model: Path, out: Path, kills: int, rng: random.Random,
               length: float) -> list[str]:
    """Start, kill, resume ``kills`` times, then finish; where each kill landed.

    A kill aims at one of three moments, drawn at random: while the process starts and
    loads the model, or a random 0–0.5 s after it reports a training step (a step,
    generation for GRPO, or a checkpoint write, which follows every step here)."""
    log, run = out / "killed.log", out / "killed"
    log.touch()
    where = []
    for _ in range(kills):
        if not has_checkpoint(run):  # killed before its first checkpoint: start afresh
            shutil.rmtree(run, ignore_errors=True)
        offset = log.stat().st_size
        before = set((run / "checkpoints").glob(".*tmp")) if (run / "checkpoints").is_dir() \
            else set()
        process = subprocess.Popen(command(stage, model, out, "killed", has_checkpoint(run)),
                                   stdout=log.open("a"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        aim = rng.choice(["loading", "training", "training"])
        if aim == "loading":
            time.sleep(rng.uniform(0.2, 0.6 * length))
        elif _wait_for_training(process, log, offset, 2 * length):
            time.sleep(rng.uniform(0.0, 0.5))
        if process.poll() is not None:  # it finished first: no kill left to make
            break
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        torn = sorted(p.name for p in set((run / "checkpoints").glob(".*tmp")) - before) \
            if (run / "checkpoints").is_dir() else []
        lines = _new_lines(log, offset)
        landed = lines[-1][:90] if lines else "while starting (no output yet)"
        where.append(landed + (f" — during a checkpoint write ({torn[0]} left)" if torn
                               else ""))
    if not has_checkpoint(run):
        shutil.rmtree(run, ignore_errors=True)
    code = run_to_end(command(stage, model, out, "killed", has_checkpoint(run)), log)
    if code != 0:
        raise SystemExit(f"{stage}: the resumed run failed (exit {code}); see {log}")
    return where


def weights(run: Path) -> dict[str, torch.Tensor]:
    files = sorted((run / "final").glob("*.safetensors"))
    if not files:
        raise SystemExit(f"{run}: no final weights")
    tensors = {}
    for path in files:
        tensors.update(load_file(str(path)))
    return tensors


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def compare(ref: Path, killed: Path, tolerance: float) -> tuple[float, float]:
    """Max |Δ| over the final weights and over every logged number."""
    a, b = weights(ref), weights(killed)
    if a.keys() != b.keys():
        raise SystemExit(f"{killed}: its final weights hold other tensors than {ref}'s")
    weight_gap = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    ra, rb = metrics(ref), metrics(killed)
    if [sorted(r) for r in ra] != [sorted(r) for r in rb]:
        raise SystemExit(f"{killed}: its metrics log differs in rows or keys from {ref}'s")
    gaps = [abs(x[k] - y[k]) for x, y in zip(ra, rb) for k in x
            if isinstance(x[k], (int, float)) and isinstance(y[k], (int, float))]
    return weight_gap, max(gaps, default=0.0)


def soak(stage: str, root: Path, kills: int, seed: int, tolerance: float) -> bool:
    out = root / stage
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model = save_tiny_model(out / "model")
    started = time.perf_counter()
    if run_to_end(command(stage, model, out, "ref", resume=False), out / "ref.log") != 0:
        raise SystemExit(f"{stage}: the uninterrupted run failed; see {out / 'ref.log'}")
    length = time.perf_counter() - started
    rng = random.Random(f"soak-{stage}-{seed}")
    where = killed_run(stage, model, out, kills, rng, length)
    weight_gap, metric_gap = compare(out / "ref", out / "killed", tolerance)
    ok = weight_gap <= tolerance and metric_gap <= tolerance
    print(f"{stage}: {len(where)} kills of {kills} (uninterrupted run {length:.1f} s); "
          f"max |Δ| weights "
          f"{weight_gap:.2e}, metrics {metric_gap:.2e} → {'equal' if ok else 'DIFFERENT'}")
    for index, line in enumerate(where, start=1):
        print(f"  kill {index}: {line}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--out", type=Path, default=Path("runs/soak"))
    args = parser.parse_args()
    results = [soak(stage, args.out, args.kills, args.seed, args.tolerance)
               for stage in args.stages]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
