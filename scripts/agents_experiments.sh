#!/usr/bin/env bash
# The agent measurements of docs/agents.md with the embedded model: the agents × task
# sets table, the memory ablation (flat vs scratchpad on 2–8 hop chains), agentic SFT on
# the oracle's chains-train trajectories judged on the held-out chains, and multi-turn
# RL (agent-rl) from that SFT model, then every finished run in one report
# ($OUT/agents/all: report.md and figures/hops.png). Each step resumes (finished tasks are skipped) and
# prints its wall time.
#
#   scripts/agents_experiments.sh
#   ONLY="table memory" THREADS=1 scripts/agents_experiments.sh
#   AGENT_RL_ROUNDS=3 ONLY=rl scripts/agents_experiments.sh
#   LIMIT=6 ONLY="plan-execute planner-executor" scripts/agents_experiments.sh  # first 6 of each set
set -euo pipefail
cd "$(dirname "$0")/.."
PREFALIGN=${PREFALIGN:-prefalign}
OUT=${OUT:-runs}
THREADS=${THREADS:-2}
ONLY=${ONLY:-react memory sft table rl report}
STEPS=${MAX_STEPS:-10}          # a chain of h hops takes h + 1 turns
TOKENS=${MAX_NEW_TOKENS:-96}    # the oracle's turns are under 40 tokens
SETS=(--tasks benchmark --tasks gaia --tasks chains --tasks code)
export OMP_NUM_THREADS=$THREADS

timed() {
    local name=$1 start
    shift
    start=$(date +%s)
    "$@"
    echo "$name: $(($(date +%s) - start))s"
}

agent() {  # agent NAME MODEL ARGS...: results in $OUT/agents/NAME
    local name=$1 model=$2
    shift 2
    timed "$name" $PREFALIGN eval agent --model "$model" --max-steps "$STEPS" \
        --max-new-tokens "$TOKENS" --out "$OUT/agents/$name" "$@"
}

for part in $ONLY; do
    case $part in
    react)   # the ReAct row of the table, and the flat-memory side of the ablation
        agent react embedded --agent react "${SETS[@]}" ;;
    memory)
        agent react-scratchpad embedded --agent react --memory scratchpad \
            --tasks chains ;;
    sft)     # oracle trajectories → SFT rows → SFT → ReAct on the held-out chains
        $PREFALIGN eval agent --agent oracle --tasks chains-train \
            --out "$OUT/agents/oracle-train"
        $PREFALIGN data agent-sft "$OUT/agents/oracle-train/trajectories.jsonl" \
            --out "$OUT/data/agent-sft.jsonl"
        grep -E '"task": "chains-train/chain-train-[234]-' "$OUT/data/agent-sft.jsonl" \
            > "$OUT/data/agent-sft-2to4-hops.jsonl"
        timed agent-sft $PREFALIGN sft --config configs/sft-agent.yaml "output_dir=$OUT" \
            "data.train=$OUT/data/agent-sft-2to4-hops.jsonl" "train.threads=$THREADS"
        agent react-after-sft "$OUT/agent-sft/final" --agent react --tasks chains ;;
    memory-after-sft)  # the memory ablation again, with the model that calls tools
        agent react-scratchpad-after-sft "$OUT/agent-sft/final" --agent react \
            --memory scratchpad --tasks chains ;;
    table)   # the other agents on every set
        for name in zero-shot plan-execute planner-executor; do
            agent "$name" embedded --agent "$name" "${SETS[@]}" ${LIMIT:+--limit "$LIMIT"}
        done ;;
    zero-shot|plan-execute|planner-executor)
        agent "$part" embedded --agent "$part" "${SETS[@]}" ${LIMIT:+--limit "$LIMIT"} ;;
    rl)
        timed agent-rl $PREFALIGN agent-rl --config configs/agent-rl-chains.yaml \
            "output_dir=$OUT" "model.name=$OUT/agent-sft/final" "train.threads=$THREADS" \
            ${AGENT_RL_ROUNDS:+"agent_rl.rounds=$AGENT_RL_ROUNDS"} ;;
    report)  # every finished agent run in one table, and the flat vs scratchpad figure
        runs=()
        for name in react react-scratchpad react-after-sft react-scratchpad-after-sft \
                    zero-shot plan-execute planner-executor; do
            [ -s "$OUT/agents/$name/trajectories.jsonl" ] && runs+=("$OUT/agents/$name")
        done
        $PREFALIGN eval agent-report "${runs[@]}" --out "$OUT/agents/all" ;;
    *) echo "unknown part: $part (react, memory, sft, memory-after-sft, table or one of" \
            "its agents, rl, report)" >&2; exit 2 ;;
    esac
done
