#!/usr/bin/env bash
# Base and SFT (and DPO with WITH_DPO=1) on the built-in arithmetic task, compared on held-out problems
# (split=test: content-disjoint by construction from the split=train problems the
# configs train on; a+b and b+a always fall in the same split): the
# verifier's pass rate with Wilson intervals next to a pairwise language-model
# judge's win rate against the base model. Finished stages are skipped on re-run.
#
#   scripts/compare_arithmetic.sh
#   WITH_DPO=1 PROMPTS=64 MAX_NEW_TOKENS=64 LM_JUDGE=lm:embedded OUT=runs scripts/compare_arithmetic.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs}
PROMPTS=${PROMPTS:-64}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-64}
LM_JUDGE=${LM_JUDGE:-lm:embedded}
THREADS=${THREADS:-2}
PREFALIGN=${PREFALIGN:-prefalign}
COMMON=("output_dir=$OUT" "train.threads=$THREADS")

source scripts/stage.sh

stage sft-arithmetic $PREFALIGN sft --config configs/sft.yaml "${COMMON[@]}"
POLICIES=(embedded "$OUT/sft-arithmetic")
if [[ -n "${WITH_DPO:-}" ]]; then
    stage dpo-arithmetic $PREFALIGN dpo --config configs/dpo-arithmetic.yaml "${COMMON[@]}"
    POLICIES+=("$OUT/dpo-arithmetic")
fi

start=$(date +%s)
$PREFALIGN eval compare "${POLICIES[@]}" \
    --prompts "builtin:arithmetic?split=test&n=$PROMPTS" \
    --judge verifier:arithmetic --judge "$LM_JUDGE" \
    --baseline embedded --max-new-tokens "$MAX_NEW_TOKENS" --out "$OUT/compare-arithmetic"
echo "eval compare: $(($(date +%s) - start))s"
