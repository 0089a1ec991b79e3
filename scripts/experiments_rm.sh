#!/usr/bin/env bash
# The reward-model ablations of docs/experiments.md on hh-rlhf harmless:
#   - the data-volume curve (configs/experiments/rm-data-volume.yaml),
#   - whole conversation vs last user turn (configs/experiments/rm-context.yaml),
#   - a weighted mixture of hh and arithmetic pairs (configs/experiments/rm-mixture.yaml),
#   - LoRA r = 8 / 16 vs full fine-tuning (configs/experiments/rm-lora-rank.yaml).
# First the splits and the frozen-backbone feature cache: ONLY=frozen scripts/rm_hh.sh
#
#   scripts/experiments_rm.sh
#   ONLY="rm-data-volume rm-context" scripts/experiments_rm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PREFALIGN=${PREFALIGN:-prefalign}
ONLY=${ONLY:-rm-data-volume rm-context rm-mixture rm-lora-rank}
DATA=runs/data/hh-harmless
LAST="$DATA-last-turn"

mkdir -p "$LAST"
python - "$DATA" "$LAST" <<'PY'
import json
import sys
from pathlib import Path

source, target = map(Path, sys.argv[1:])
for split in ("train", "eval"):
    rows = [json.loads(line) for line in (source / f"{split}.jsonl").open()]
    with (target / f"{split}.jsonl").open("w") as out:
        for row in rows:
            prompt = row["prompt"]
            if isinstance(prompt, list):  # keep the final user message alone
                row["prompt"] = [next(m for m in reversed(prompt) if m["role"] == "user")]
            out.write(json.dumps(row) + "\n")
    print(f"{target / f'{split}.jsonl'}: {len(rows)} pairs, prompts cut to the last user turn")
PY

for sweep in $ONLY; do
    start=$(date +%s)
    $PREFALIGN sweep "configs/experiments/$sweep.yaml"
    echo "$sweep: $(($(date +%s) - start))s"
done
