#!/usr/bin/env bash
# Base, SFT, DPO, KTO and PPO on hh-rlhf harmless-base, compared on held-out prompts.
#
# Trains the frozen-backbone reward model and writes the prompt-disjoint splits
# (scripts/rm_hh.sh), then SFT on the chosen replies, DPO and KTO from the SFT model,
# and PPO against the reward model from the SFT model; finally `prefalign eval compare`
# on the first PROMPTS held-out prompts, judged by the reward model and by a pairwise
# language-model judge, with win rates against SFT and KL to the SFT model.
# Finished stages are skipped on re-run.
#
#   scripts/compare_hh.sh
#   PROMPTS=64 MAX_NEW_TOKENS=48 LM_JUDGE=lm:embedded OUT=runs scripts/compare_hh.sh
#   MAX_PROMPT_LENGTH=256 scripts/compare_hh.sh   # faster: keep the end of long chats
#   SKIP_COMPARE=1 scripts/compare_hh.sh          # the runs only
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs}
PROMPTS=${PROMPTS:-64}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-48}
LM_JUDGE=${LM_JUDGE:-lm:embedded}
PPO_STEPS=${PPO_STEPS:-40}
THREADS=${THREADS:-2}
PREFALIGN=${PREFALIGN:-prefalign}
DATA="$OUT/data/hh-harmless"
COMMON=("output_dir=$OUT" "train.threads=$THREADS" "data.train=$DATA/train.jsonl")

source scripts/stage.sh

stage rm-hh-frozen env ONLY=frozen OUT="$OUT" THREADS="$THREADS" PREFALIGN="$PREFALIGN" \
    scripts/rm_hh.sh
stage sft-hh $PREFALIGN sft --config configs/sft-hh.yaml "${COMMON[@]}"
stage dpo-hh $PREFALIGN dpo --config configs/dpo-hh.yaml "${COMMON[@]}" \
    "model.name=$OUT/sft-hh/final"
stage kto-hh $PREFALIGN kto --config configs/kto-hh.yaml "${COMMON[@]}" \
    "model.name=$OUT/sft-hh/final"
stage ppo-hh $PREFALIGN ppo --config configs/ppo-rm.yaml name=ppo-hh "${COMMON[@]}" \
    "model.name=$OUT/sft-hh/final" "data.eval=$DATA/eval.jsonl" \
    "rewards=[{name: rm, params: {path: $OUT/rm-hh-frozen/final}, squash: false}]" \
    "train.max_steps=$PPO_STEPS"

if [[ -n "${SKIP_COMPARE:-}" ]]; then exit 0; fi
head -n "$PROMPTS" "$DATA/eval.jsonl" > "$DATA/compare-prompts.jsonl"
start=$(date +%s)
$PREFALIGN eval compare embedded "$OUT/sft-hh" "$OUT/dpo-hh" "$OUT/kto-hh" "$OUT/ppo-hh" \
    --prompts "$DATA/compare-prompts.jsonl" \
    --judge "rm:$OUT/rm-hh-frozen/final" --judge "$LM_JUDGE" \
    --baseline "$OUT/sft-hh" --reference "$OUT/sft-hh/final" \
    --max-new-tokens "$MAX_NEW_TOKENS" --out "$OUT/compare-hh" \
    ${MAX_PROMPT_LENGTH:+--max-prompt-length "$MAX_PROMPT_LENGTH"}
echo "eval compare: $(($(date +%s) - start))s"
