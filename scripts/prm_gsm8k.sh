#!/usr/bin/env bash
# Process vs outcome reward models on GSM8K, end to end on the embedded model.
#
#   1. PRM and ORM on the same step-labelled solutions of 300 training problems
#      (frozen backbone; the ORM reuses the PRM's cached features).
#   2. SFT on 400 GSM8K worked solutions; the SFT model samples SAMPLES solutions
#      for each of the first RERANK test problems.
#   3. prefalign eval prm: the comparison on TEST test problems (their references and
#      perturbations, the critical case among them) and best-of-n on the samples.
#   4. (DENSE=1) two short GRPO runs from the SFT model: outcome reward vs the PRM's
#      dense per-step rewards.
# Every step prints its wall time; a finished step is skipped on a re-run.
#
#   scripts/prm_gsm8k.sh
#   TEST=100 RERANK=20 SAMPLES=4 DENSE=0 scripts/prm_gsm8k.sh       # a small trial
set -euo pipefail
cd "$(dirname "$0")/.."

GSM8K=${GSM8K:-../shared/data/gsm8k}
OUT=${OUT:-runs}
TEST=${TEST:-500}
RERANK=${RERANK:-100}
SAMPLES=${SAMPLES:-4}
DENSE=${DENSE:-1}
PREFALIGN=${PREFALIGN:-prefalign}

if [[ ! -f "$GSM8K/train.jsonl" || ! -f "$GSM8K/test.jsonl" ]]; then
    echo "missing $GSM8K/train.jsonl or test.jsonl" >&2
    exit 1
fi

timed() {  # timed NAME DONE_MARKER COMMAND...: run unless DONE_MARKER exists
    local name=$1 done=$2
    shift 2
    if [[ -e "$done" ]]; then
        echo "== $name: done earlier ($done)"
        return
    fi
    local start=$SECONDS
    "$@"
    echo "== $name: $((SECONDS - start)) s"
}

timed prm "$OUT/prm-gsm8k/final/step_reward_model.json" \
    "$PREFALIGN" rm --config configs/prm-gsm8k.yaml "output_dir=$OUT"
timed orm "$OUT/orm-gsm8k/final/step_reward_model.json" \
    "$PREFALIGN" rm --config configs/orm-gsm8k.yaml "output_dir=$OUT"
timed sft "$OUT/sft-gsm8k/final" \
    "$PREFALIGN" sft --config configs/sft-gsm8k.yaml "output_dir=$OUT"
timed eval "$OUT/prm-eval/prm_eval.json" \
    "$PREFALIGN" eval prm --model "prm=$OUT/prm-gsm8k" --model "orm=$OUT/orm-gsm8k" \
    --data "gsm8k_steps:path=$GSM8K&split=test&n=$TEST" \
    --policy "$OUT/sft-gsm8k/final" --problems "gsm8k:path=$GSM8K&split=test" \
    --max-problems "$RERANK" --samples "$SAMPLES" --out "$OUT/prm-eval"
if [[ "$DENSE" == 1 ]]; then
    timed grpo-outcome "$OUT/grpo-gsm8k/final" \
        "$PREFALIGN" grpo --config configs/grpo-gsm8k.yaml "output_dir=$OUT" \
        "model.name=$OUT/sft-gsm8k/final"
    timed grpo-process "$OUT/grpo-gsm8k-prm/final" \
        "$PREFALIGN" grpo --config configs/grpo-gsm8k.yaml "output_dir=$OUT" \
        "model.name=$OUT/sft-gsm8k/final" name=grpo-gsm8k-prm \
        "policy.process_reward=$OUT/prm-gsm8k"
fi
