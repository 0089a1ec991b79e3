"""Reward-model training with LoRA: prefalign against TRL's ``RewardTrainer``.

The same set-up as ``dpo_vs_trl.py``: the embedded SmolLM2-135M-Instruct in
fp32 on CPU, LoRA r=16 (alpha 32, no dropout) on q/k/v/o plus a trainable
scalar head, 4 pairs per optimizer step, learning rate 5e-5 (linear decay, no
warmup), gradient clipping at 1.0, Bradley-Terry loss ``−log σ(r_c − r_r)``,
the same pairs (prompt + chosen, prompt + rejected as token ids), the same
steps and threads. Runs:

* ``prefalign``: ``prefalign.stages.reward_algorithms.PairwiseRewardAlgorithm``
  on the engine, no activation checkpointing, each pair as one prefix-shared
  row ``[prompt | chosen | rejected]`` (the prompt computed once, rewards read
  at the last chosen and last rejected token; exact), the 4 pairs of a step run
  one pair per forward/backward (``batch_size=1, grad_accum=4``: the same
  optimizer step, exact for a per-pair loss);
* ``trl-default``: ``RewardConfig`` defaults at batch size 4 (activation
  checkpointing on), except ``bf16=False`` so both sides compute in fp32;
* ``trl-fast`` / ``trl-fast-micro1``: no activation checkpointing, at batch 4
  and as 4 micro-batches of one pair.

Ablations (``--ablation``): prefalign at batch 4 in one pass, and without
prefix sharing.

    python benchmarks/rm_vs_trl.py [--steps 12] [--reps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SCRIPT = Path(__file__).resolve()
RUNS = {
    "prefalign": ("prefalign", {"micro": 1, "sharing": True}),
    "trl-default": ("trl", {"micro": 4, "fast": False}),
    "trl-fast": ("trl", {"micro": 4, "fast": True}),
    "trl-fast-micro1": ("trl", {"micro": 1, "fast": True}),
}
ABLATIONS = {"prefalign-batch4": ("prefalign", {"micro": 4, "sharing": True}),
             "prefalign-unshared": ("prefalign", {"micro": 1, "sharing": False})}
TRL_FAST = ("trl-fast", "trl-fast-micro1")


def no_head(ids, args, kwargs) -> int:
    """The scalar head is ``H × 1``: its FLOPs are left out of the model."""
    return 0


def child_prefalign(spec: dict) -> dict:
    from prefalign.models.heads import ScalarHeadModel
    from prefalign.stages.reward_algorithms import PairwiseRewardAlgorithm, TokenPairs

    pairs, causal_lm, tokenizer = common.prefalign_start(spec)
    model = ScalarHeadModel.from_causal_lm(causal_lm)
    records: list[dict] = []
    common.record_passes(model.backbone, records, no_head)
    micro = spec["micro"]
    started = time.perf_counter()
    source = TokenPairs(pairs, tokenizer.pad_token_id, prefix_sharing=spec["sharing"])
    algorithm = PairwiseRewardAlgorithm(source, None, micro,
                                        spec["seed"], use_margin=False, center_coef=0.0)
    figures = common.prefalign_train(model, algorithm, spec, micro)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "reference_s": 0.0, "passes": records, **figures}


def child_trl(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    pairs = common.read_pairs(spec["pairs"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["model_path"], num_labels=1, dtype=torch.float32, attn_implementation="sdpa")
    records: list[dict] = []
    common.record_passes(model.model, records, no_head)
    rows = [{"chosen_ids": p["prompt_ids"] + p["chosen_ids"],
             "rejected_ids": p["prompt_ids"] + p["rejected_ids"]} for p in pairs]
    fast, micro = spec["fast"], spec["micro"]
    with tempfile.TemporaryDirectory() as out:
        config = RewardConfig(output_dir=out, per_device_train_batch_size=micro,
                              gradient_accumulation_steps=spec["batch_size"] // micro,
                              learning_rate=spec["lr"], max_steps=spec["steps"], bf16=False,
                              use_cpu=True, report_to="none", save_strategy="no",
                              seed=spec["seed"], disable_tqdm=True,
                              gradient_checkpointing=not fast)
        peft_config = LoraConfig(r=spec["lora_rank"], lora_alpha=2 * spec["lora_rank"],
                                 lora_dropout=0.0, target_modules=common.LORA_TARGETS,
                                 task_type="SEQ_CLS")
        started = time.perf_counter()
        trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer, peft_config=peft_config)
        output = trainer.train()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "reference_s": 0.0, "peak_rss_mb": common.peak_rss_mb(),
            "passes": records, "checkpointing": not fast, "head_recompute": False,
            "final_loss": output.training_loss}


CHILDREN = {"prefalign": child_prefalign, "trl": child_trl}


def run_kind(kind: str, side: str, settings: dict, spec: dict, work: Path, index: int) -> dict:
    spec_path = work / f"spec-{kind}-{index}.json"
    common.write_json(spec_path, {**spec, **settings,
                                  "micro": min(settings["micro"], spec["batch_size"])})
    return common.run_child(SCRIPT, side, spec_path, spec["threads"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        common.child_main(CHILDREN, sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser, default_out=SCRIPT.parent / "results" / "rm.json")
    parser.add_argument("--ablation", action="store_true",
                        help="also run prefalign at batch 4 in one pass")
    args = parser.parse_args()
    runs = {**RUNS, **(ABLATIONS if args.ablation else {})}
    setup = common.prepare(args, SCRIPT)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = setup.spec(work)
        results = common.alternate(
            runs, args.reps, lambda kind, index: run_kind(kind, *runs[kind], spec, work, index))
    summary = {kind: common.summarise(runs_, setup.pairs, setup.shape, setup.peak_flops)
               for kind, runs_ in results.items()}
    fastest_trl = max(TRL_FAST, key=lambda kind: summary[kind]["pairs_per_s"])
    comparisons = {"prefalign vs trl-default": ("prefalign", "trl-default"),
                   f"prefalign vs TRL fastest ({fastest_trl})": ("prefalign", fastest_trl)}
    if args.ablation:
        comparisons["prefalign-batch4 vs trl-default"] = ("prefalign-batch4", "trl-default")
    report = common.report("rm", SCRIPT, setup, args, summary, comparisons, results)
    common.write_json(args.out, report)
    print(common.format_report(report))


if __name__ == "__main__":
    main()
