"""Peak memory of DPO with an adapter-disabled reference vs policy-only training.

With LoRA, the reference policy is the same weights with the adapters switched
off, so a reference costs no second copy of the model. This script runs a few
DPO steps with the reference computed live every step (``reference.precompute
=false``, the worst case) and the same steps with a reference-free loss
(SimPO: policy only), each in its own process, and compares peak resident
memory (``ru_maxrss``).

    python benchmarks/reference_memory.py [--model embedded] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys
from prefalign.config import PreferenceConfig
from prefalign.stages.preference import run_preference
cfg = PreferenceConfig.model_validate(json.loads(sys.argv[1]))
run_preference(cfg)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(loss: str, model: str, steps: int, out: str) -> float:
    cfg = {"name": f"mem-{loss}", "output_dir": out, "model": {"name": model},
           "loss": {"name": loss}, "reference": {"precompute": False},
           "data": {"train": "builtin:arithmetic?n=64&seed=11", "eval_fraction": 0.0,
                    "max_length": 96, "max_prompt_length": 64},
           "train": {"max_steps": steps, "batch_size": 8, "save_every": 0, "lr": 1e-4}}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        with_reference = run("dpo", args.model, args.steps, out)
        policy_only = run("simpo", args.model, args.steps, out)
    print(f"peak RSS, DPO with adapter-disabled reference (live): {with_reference:.0f} MB")
    print(f"peak RSS, policy only (SimPO, no reference):          {policy_only:.0f} MB")
    print(f"ratio: {with_reference / policy_only:.3f}")


if __name__ == "__main__":
    main()
