#!/usr/bin/env bash
# AI feedback (constitutional) on hh-rlhf harmless-base prompts, checked against chance.
#
# The embedded model samples two replies per training prompt and, as a pairwise
# language-model judge with the packaged constitution (both orders asked), chooses
# one; `prefalign data label` writes the pairs with the judge's confidence. The
# confident half (confidence ≥ its median) and a random subset of the same size
# each train a frozen-backbone reward model (configs/rm-hh-frozen.yaml), as does a
# same-size set of the human labels on the same prompts; each is scored on the
# human-labelled held-out pairs, over SEEDS training seeds, with Wilson intervals.
# Prompts are cut to their first user turn so sampling and judging stay short on CPU.
# Needs the splits of scripts/rm_hh.sh; labelling resumes where a killed run stopped.
#
#   scripts/feedback_hh.sh
#   N=300 MAX_NEW_TOKENS=32 JUDGE=lm:embedded SEEDS="0 1 2" OUT=runs scripts/feedback_hh.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs}
N=${N:-300}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-32}
JUDGE=${JUDGE:-lm:embedded}
SEEDS=${SEEDS:-0 1 2}
THREADS=${THREADS:-2}
PREFALIGN=${PREFALIGN:-prefalign}
PYTHON=${PYTHON:-python}
DATA="$OUT/data/hh-harmless"
EXP="$OUT/feedback-hh"
mkdir -p "$EXP"

if [[ ! -f "$DATA/train.jsonl" ]]; then
    echo "missing $DATA/train.jsonl: run scripts/rm_hh.sh first (it writes the splits)" >&2
    exit 1
fi

# Prompts: the first user turn of the first N training pairs. Human reference: the
# single-turn training pairs (their labels apply unchanged), as many as the AI sets hold.
# Whatever shares a first user turn with a held-out pair is left out of every set.
$PYTHON - "$DATA/train.jsonl" "$DATA/eval.jsonl" "$N" "$EXP" <<'PY'
import json
import sys
from pathlib import Path

source, held_out, n, exp = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
rows = [json.loads(line) for line in source.read_text().splitlines()]
with open(exp / "prompts.jsonl", "w") as prompts:
    for row in rows[:n]:
        prompts.write(json.dumps({"prompt": row["prompt"][:1]}) + "\n")
with open(exp / "human.jsonl", "w") as human:
    for row in rows:
        if len(row["prompt"]) == 1:
            human.write(json.dumps(row) + "\n")
held = {json.dumps(json.loads(line)["prompt"][:1]) for line in held_out.read_text().splitlines()}
(exp / "held-out-first-turns.json").write_text(json.dumps(sorted(held)))
PY

label() {
    $PREFALIGN data label --model embedded --prompts "$EXP/prompts.jsonl" --judge "$JUDGE" \
        --samples 2 --max-new-tokens "$MAX_NEW_TOKENS" --seed 0 --out "$EXP/confident.jsonl" "$@"
}
start=$(date +%s)
label
echo "labelling: $(($(date +%s) - start))s"
cp "$EXP/confident.jsonl" "$EXP/all.jsonl"
median=$($PYTHON -c '
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(statistics.median(r["metadata"]["confidence"] for r in rows))' "$EXP/all.jsonl")
echo "median confidence: $median"
label --min-confidence "$median" --random-control "$EXP/random.jsonl"
# Leave out pairs whose first user turn is a held-out prompt's (the leakage check would
# refuse them); the human set takes as many single-turn pairs as the confident set keeps.
$PYTHON - "$EXP" <<'PY'
import json
import sys
from pathlib import Path

exp = Path(sys.argv[1])
held = set(json.loads((exp / "held-out-first-turns.json").read_text()))


def disjoint(name):
    rows = [json.loads(line) for line in (exp / f"{name}.jsonl").read_text().splitlines()]
    return [r for r in rows if json.dumps(r["prompt"][:1]) not in held]


sets = {name: disjoint(name) for name in ("confident", "random", "human")}
sets["human-same-size"] = sets.pop("human")[:len(sets["confident"])]
for name, rows in sets.items():
    (exp / f"{name}.train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{name}: {len(rows)} training pairs")
PY

for source in confident random human-same-size; do
    for seed in $SEEDS; do
        $PREFALIGN rm --config configs/rm-hh-frozen.yaml "name=rm-$source-s$seed" \
            "output_dir=$EXP" "data.train=$EXP/$source.train.jsonl" "data.eval=$DATA/eval.jsonl" \
            "train.seed=$seed" "train.threads=$THREADS" > "$EXP/rm-$source-s$seed.log" 2>&1
    done
done

$PYTHON - "$EXP" $SEEDS <<'PY'
import json
import sys
from pathlib import Path

from prefalign.intervals import wilson_interval

exp, seeds = Path(sys.argv[1]), sys.argv[2:]

names = {"confident": "AI labels, confident half", "random": "AI labels, random subset",
         "human-same-size": "human labels, same size"}
print(f"\n{'training pairs':<28}{'n':>5}" + "".join(f"{'seed ' + s:>22}" for s in seeds))
for source, title in names.items():
    n_train = sum(1 for _ in open(exp / f"{source}.train.jsonl"))
    cells = []
    for seed in seeds:
        result = json.loads((exp / f"rm-{source}-s{seed}" / "eval.json").read_text())
        acc, pairs = result["accuracy"], int(result["pairs"])
        low, high = wilson_interval(round(acc * pairs), pairs)
        cells.append(f"{acc:.3f} [{low:.3f},{high:.3f}]")
    print(f"{title:<28}{n_train:>5}" + "".join(f"{c:>22}" for c in cells))
PY
