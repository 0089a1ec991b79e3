#!/usr/bin/env bash
# A few DPO-family steps of each loss on the embedded model with LoRA; the
# first loss computes the reference log-probs, the later ones reuse the cache.
set -euo pipefail
OUT=${OUT:-runs/loss-sweep}
for loss in dpo ipo simpo orpo caldpo drdpo; do
  prefalign dpo name="$loss" output_dir="$OUT" loss.name="$loss" \
    data.train='builtin:arithmetic?n=48&seed=21' data.eval_fraction=0.25 \
    data.max_length=96 data.max_prompt_length=64 \
    train.max_steps=3 train.batch_size=8 train.save_every=0 train.lr=5e-4 2>&1 \
    | grep -E "reference log-probs|^done"
done
