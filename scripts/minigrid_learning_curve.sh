#!/usr/bin/env bash
# Held-out success against the number of demonstrations: the quick MiniGrid pipeline
# (configs/minigrid-quick.yaml) at DEMOS demonstrated episodes per environment (default
# 4 8 16), everything else equal; then one figure with SFT, SFT + DPO (on-policy pairs)
# and SFT + multi-turn GRPO. Finished runs are skipped (the pipeline resumes).
#   bash scripts/minigrid_learning_curve.sh            # runs/minigrid-curve.png
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-configs/minigrid-quick.yaml}
DEMOS=${DEMOS:-4 8 16}
OUT=${OUT:-runs}
runs=()
for demos in $DEMOS; do
    name="minigrid-curve-demos$demos"
    start=$(date +%s)
    "$PY" -m prefalign pipeline "$CONFIG" "data.demo_episodes=$demos" "name=$name" \
        "output_dir=$OUT"
    echo "$name: $(($(date +%s) - start))s"
    runs+=("$OUT/$name")
done
"$PY" -m prefalign.pipeline.minigrid.learning_curve "${runs[@]}" --out "$OUT/minigrid-curve.png"
