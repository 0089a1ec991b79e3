#!/usr/bin/env bash
# Reward models on real human preference data: Anthropic hh-rlhf (harmless-base).
#
# Converts the raw transcripts, splits them by prompt with a fixed seed (about 80/20;
# training uses at most 1,200 pairs and the held-out rest evaluates), then trains and
# evaluates a frozen-backbone and a LoRA reward model on the embedded model, and prints
# held-out accuracy, ECE, length-bias figures and wall-clock times.
#
#   scripts/rm_hh.sh                    # both models
#   ONLY=frozen scripts/rm_hh.sh        # one of them (frozen | lora)
#   THREADS=2 SEED=0 RAW=path/to/pairs.jsonl OUT=runs scripts/rm_hh.sh
#   EXTRA="data.max_examples=100" EVAL_PAIRS=50 ONLY=frozen scripts/rm_hh.sh  # small trial
set -euo pipefail
cd "$(dirname "$0")/.."

RAW=${RAW:-../shared/data/hh-rlhf-harmless/pairs.jsonl}
OUT=${OUT:-runs}
DATA="$OUT/data/hh-harmless"
THREADS=${THREADS:-2}
SEED=${SEED:-0}
ONLY=${ONLY:-frozen lora}
EXTRA=${EXTRA:-}
EVAL_PAIRS=${EVAL_PAIRS:-}
PREFALIGN=${PREFALIGN:-prefalign}

if [[ ! -f "$RAW" ]]; then
    echo "missing $RAW (raw hh-rlhf pairs with chosen/rejected transcripts)" >&2
    exit 1
fi
mkdir -p "$DATA"
$PREFALIGN data convert-hh "$RAW" "$DATA/pairs.jsonl"
$PREFALIGN data split "$DATA/pairs.jsonl" --kind preference --out "$DATA" \
    --fractions train=0.8,eval=0.2 --seed "$SEED"
EVAL="$DATA/eval.jsonl"
if [[ -n "$EVAL_PAIRS" ]]; then
    head -n "$EVAL_PAIRS" "$DATA/eval.jsonl" > "$DATA/eval-first-$EVAL_PAIRS.jsonl"
    EVAL="$DATA/eval-first-$EVAL_PAIRS.jsonl"
fi

for variant in $ONLY; do
    name="rm-hh-$variant"
    start=$(date +%s)
    $PREFALIGN rm --config "configs/$name.yaml" "name=$name" "output_dir=$OUT" \
        "data.train=$DATA/train.jsonl" "data.eval=$EVAL" \
        "train.threads=$THREADS" "train.seed=$SEED" $EXTRA
    trained=$(date +%s)
    $PREFALIGN eval rm --model "$OUT/$name/final" --data "$EVAL" \
        --threads "$THREADS" --probe-limit 200
    echo "$name: training $((trained - start))s, evaluation $(($(date +%s) - trained))s"
done

python - "$OUT" $ONLY <<'PY'
import json
import sys
from pathlib import Path

out, variants = Path(sys.argv[1]), sys.argv[2:]
print(f"\n{'model':<14}{'pairs':>6}{'acc':>8}{'ECE':>8}{'r(len)':>8}{'filler Δ':>10}"
      f"{'Δ>0':>6}{'longer wins':>12}{'train s':>9}")
for variant in variants:
    run = out / f"rm-hh-{variant}"
    train = json.loads((run / "eval.json").read_text())
    diag = json.loads((run / "rm_eval.json").read_text())
    probe = diag["filler_probe"]
    print(f"{variant:<14}{diag['pairs']:>6}{diag['accuracy']:>8.3f}{diag['ece']:>8.3f}"
          f"{diag['length_score_pearson']:>8.3f}{probe['mean_delta']:>+10.3f}"
          f"{probe['increased_fraction']:>6.0%}{diag['longer_wins_accuracy']:>12.3f}"
          f"{train['train_time_s']:>9.0f}")
PY
