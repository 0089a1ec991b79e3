#!/usr/bin/env bash
# Run every benchmark against TRL and write benchmarks/RESULTS.md.
#
# Needs TRL (`pip install -e '.[bench]'`) and the embedded model (fetched on
# first use). Run it on a quiet machine: every run is timed, and other work on
# the same cores shows up as noise. About 3 hours on a 2-core CPU with the
# defaults below (DPO and reward model ~45 min, GRPO and RLOO ~30 min each at
# their 8 steps of 16 completions, memory scaling ~1 h); STEPS (offline
# benchmarks), REPS and THREADS override them.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-12}"
REPS="${REPS:-3}"
THREADS="${THREADS:-2}"
python benchmarks/dpo_vs_trl.py --steps "$STEPS" --reps "$REPS" --threads "$THREADS" --ablation
python benchmarks/rm_vs_trl.py --steps "$STEPS" --reps "$REPS" --threads "$THREADS"
python benchmarks/grpo_vs_trl.py --reps "$REPS" --threads "$THREADS"
python benchmarks/grpo_vs_trl.py --algorithm rloo --reps "$REPS" --threads "$THREADS"
python benchmarks/grpo_memory.py --threads "$THREADS"
python benchmarks/results_md.py
