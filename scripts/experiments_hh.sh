#!/usr/bin/env bash
# The hh-rlhf harmless methods table (docs/experiments.md): every method from the same
# SFT model, judged on the same held-out prompts.
#
# 1. scripts/compare_hh.sh: the prompt-disjoint splits, the frozen reward model the
#    online methods train against (rm-hh-frozen), SFT, DPO, KTO and PPO.
# 2. The sweep configs/experiments/hh-methods.yaml: IPO, SimPO, ORPO, GRPO, RLOO and
#    online DPO.
# 3. A judge reward model trained on held-out pairs that no policy and no training
#    reward model saw: the eval split minus the comparison prompts.
# 4. `prefalign eval compare` on the first PROMPTS held-out prompts: the judge reward
#    model, the training reward model (a policy that gains on it but not on the judge
#    has learnt the training model's quirks) and the language-model judge; win rates
#    against SFT, KL to SFT; SFT as best-of-BEST_OF reranked by the training model.
# Finished stages and cells are skipped on re-run.
#
#   scripts/experiments_hh.sh
#   PROMPTS=64 BEST_OF=4 MAX_PROMPT_LENGTH=256 scripts/experiments_hh.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=runs
PROMPTS=${PROMPTS:-64}
BEST_OF=${BEST_OF:-4}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-48}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-256}
LM_JUDGE=${LM_JUDGE:-lm:embedded}
THREADS=${THREADS:-2}
PREFALIGN=${PREFALIGN:-prefalign}
DATA="$OUT/data/hh-harmless"
SWEEP=runs/sweeps/hh-methods/cells  # the sweep's configs read runs/sft-hh, runs/rm-hh-frozen

source scripts/stage.sh

OUT="$OUT" THREADS="$THREADS" PREFALIGN="$PREFALIGN" PROMPTS="$PROMPTS" SKIP_COMPARE=1 \
    scripts/compare_hh.sh
$PREFALIGN sweep configs/experiments/hh-methods.yaml

head -n "$PROMPTS" "$DATA/eval.jsonl" > "$DATA/compare-prompts.jsonl"
python - "$DATA/eval.jsonl" "$DATA/compare-prompts.jsonl" "$DATA/judge-train.jsonl" <<'PY'
import json
import sys

held_out, compared, out = sys.argv[1:]
prompts = {json.dumps(json.loads(line)["prompt"], sort_keys=True) for line in open(compared)}
kept = [line for line in open(held_out)
        if json.dumps(json.loads(line)["prompt"], sort_keys=True) not in prompts]
open(out, "w").writelines(kept)
print(f"judge reward model: {len(kept)} held-out pairs, none with a compared prompt")
PY
stage rm-hh-judge $PREFALIGN rm --config configs/rm-hh-frozen.yaml name=rm-hh-judge \
    "output_dir=$OUT" "train.threads=$THREADS" "data.train=$DATA/judge-train.jsonl" \
    "data.eval=$DATA/compare-prompts.jsonl"

start=$(date +%s)
$PREFALIGN eval compare "$OUT/sft-hh" "$OUT/dpo-hh" "$SWEEP/ipo_s0" "$OUT/kto-hh" \
    "$SWEEP/simpo_s0" "$SWEEP/orpo_s0" "$OUT/ppo-hh" "$SWEEP/grpo_s0" "$SWEEP/rloo_s0" \
    "$SWEEP/online-dpo_s0" \
    --prompts "$DATA/compare-prompts.jsonl" \
    --judge "rm:$OUT/rm-hh-judge/final" --judge "rm:$OUT/rm-hh-frozen/final" \
    --judge "$LM_JUDGE" --baseline "$OUT/sft-hh" --reference "$OUT/sft-hh/final" \
    --best-of "$BEST_OF" --rerank "rm:$OUT/rm-hh-frozen/final" \
    --max-new-tokens "$MAX_NEW_TOKENS" --max-prompt-length "$MAX_PROMPT_LENGTH" \
    --out "$OUT/compare-hh-methods"
echo "eval compare: $(($(date +%s) - start))s"
