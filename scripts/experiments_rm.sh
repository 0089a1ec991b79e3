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

from prefalign.tasks.base import prompt_key

source, target = map(Path, sys.argv[1:])


def last_turn(row):
    """The row with its chat prompt cut to the final user message."""
    prompt = row["prompt"]
    if isinstance(prompt, list):
        row = {**row, "prompt": [next(m for m in reversed(prompt) if m["role"] == "user")]}
    return row


def read(split):
    return [json.loads(line) for line in (source / f"{split}.jsonl").open()]


def write(name, rows):
    with (target / name).open("w") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


train = [last_turn(row) for row in read("train")]
write("train.jsonl", train)
# Cut to the last turn, a few held-out prompts ("Thanks.") equal training ones: those
# pairs leave the held-out set of both cells, which are judged on the same pairs.
seen = {prompt_key(row) for row in train}
whole = read("eval")
kept = [(row, cut) for row, cut in ((row, last_turn(row)) for row in whole)
        if prompt_key(cut) not in seen]
write("eval.jsonl", [cut for _, cut in kept])
write("eval-whole-conversation.jsonl", [row for row, _ in kept])
print(f"{target}: {len(train)} training pairs; {len(kept)} of {len(whole)} held-out pairs "
      f"whose last turn is not a training prompt, cut and whole")
PY

for sweep in $ONLY; do
    start=$(date +%s)
    $PREFALIGN sweep "configs/experiments/$sweep.yaml"
    echo "$sweep: $(($(date +%s) - start))s"
done
