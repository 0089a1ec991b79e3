"""DPO with LoRA: prefalign against TRL's ``DPOTrainer`` on identical work.

Both sides train the embedded SmolLM2-135M-Instruct in fp32 on CPU, LoRA r=16
(alpha 32, no dropout) on q/k/v/o, 4 pairs per optimizer step, learning rate
5e-5 (linear decay, no warmup), β=0.1 sigmoid loss, gradient clipping at 1.0,
for the same number of steps over the same pairs (one epoch of steps × 4
pairs, given to both as token ids), with the same number of threads. Runs:

* ``prefalign-cold``: reference log-probs computed at the start (empty cache),
  then training, with prefalign's fast path (prefix sharing, LM head at
  completion positions only, no activation checkpointing) and the 4 pairs of
  a step run one pair per forward/backward (``batch_size=1, grad_accum=4``:
  the same optimizer step, exact for a per-pair loss, no padding, a quarter of
  the activation memory);
* ``prefalign-warm``: the same with the reference cache already filled;
* ``trl-default``: ``DPOConfig`` defaults as a user gets them at batch size 4
  (activation checkpointing on, reference log-probs recomputed every step with
  the adapters disabled), except ``bf16=False`` so both sides compute in fp32;
* ``trl-fast`` / ``trl-fast-micro1``: TRL at its fastest honest settings, no
  activation checkpointing and ``precompute_ref_log_probs=True`` (TRL 1.x has
  no padding-free DPO: ``padding_free=True`` falls back to padding), at batch 4
  and as 4 micro-batches of one pair; the faster of the two is the comparison.

Ablations (``--ablation``): prefalign cold at batch 4 in one pass, and without
prefix sharing.

Each run is a child process; the kinds alternate, in a rotated order each
repetition, and the medians are reported. Timed: from building the trainer
(reference pass included) to the end of training; loading the model is not
timed. Peak resident memory is the child's ``ru_maxrss``.

    python benchmarks/dpo_vs_trl.py [--steps 12] [--reps 3] [--threads 2]
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
# name → (side, settings); ``micro``: pairs per forward/backward.
RUNS = {
    "prefalign-cold": ("prefalign", {"micro": 1, "sharing": True, "warm": False}),
    "trl-default": ("trl", {"micro": 4, "fast": False}),
    "prefalign-warm": ("prefalign", {"micro": 1, "sharing": True, "warm": True}),
    "trl-fast": ("trl", {"micro": 4, "fast": True}),
    "trl-fast-micro1": ("trl", {"micro": 1, "fast": True}),
}
ABLATIONS = {
    "prefalign-cold-batch4": ("prefalign", {"micro": 4, "sharing": True, "warm": False}),
    "prefalign-cold-unshared": ("prefalign", {"micro": 1, "sharing": False, "warm": False}),
}
TRL_FAST = ("trl-fast", "trl-fast-micro1")


# -- children ---------------------------------------------------------------------------
def child_prefalign(spec: dict) -> dict:
    from prefalign.config import LossConfig
    from prefalign.models.token_logprobs import CompletionLogprobModel
    from prefalign.stages.preference import PreferenceAlgorithm, Reference
    from prefalign.stages.reference import reference_logps

    pairs, lm, tokenizer = common.prefalign_start(spec)
    policy = CompletionLogprobModel(lm)
    records: list[dict] = []
    common.record_passes(policy, records, lambda ids, args, kwargs: int(args[2].sum()))
    sharing, batch, micro = spec["sharing"], spec["batch_size"], spec["micro"]
    started = time.perf_counter()
    with policy.reference_context():
        reference = reference_logps(policy, pairs, tokenizer.pad_token_id, batch,
                                    prefix_sharing=sharing)
    reference_s = time.perf_counter() - started
    if spec.get("reference_only"):
        return {"reference_s": reference_s, "reference_passes": reference.forward_passes}
    algorithm = PreferenceAlgorithm(pairs, [], LossConfig(name="dpo", beta=spec["beta"]),
                                    Reference("precomputed", train=reference),
                                    tokenizer.pad_token_id, micro, spec["seed"],
                                    prefix_sharing=sharing)
    figures = common.prefalign_train(policy, algorithm, spec, micro)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "reference_s": reference_s,
            "reference_passes": reference.forward_passes, "passes": records, **figures}


def child_trl(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    pairs = common.read_pairs(spec["pairs"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=torch.float32,
                                                 attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    records: list[dict] = []
    # On CPU, TRL's fused head scores every position of every row (no Triton compaction).
    common.record_passes(model.model, records,
                  lambda ids, args, kwargs: ids.shape[0] * (ids.shape[1] - 1))
    # The pairs are token ids already: TRL's tokenisation pass is skipped.
    DPOTrainer._prepare_dataset = lambda self, dataset, *args, **kwargs: dataset
    fast, micro = spec["fast"], spec["micro"]
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(output_dir=out, per_device_train_batch_size=micro,
                           gradient_accumulation_steps=spec["batch_size"] // micro,
                           learning_rate=spec["lr"], beta=spec["beta"], loss_type=["sigmoid"],
                           max_steps=spec["steps"], bf16=False, use_cpu=True, report_to="none",
                           save_strategy="no", seed=spec["seed"], disable_tqdm=True,
                           gradient_checkpointing=not fast, precompute_ref_log_probs=fast,
                           precompute_ref_batch_size=spec["batch_size"])
        peft_config = LoraConfig(r=spec["lora_rank"], lora_alpha=2 * spec["lora_rank"],
                                 lora_dropout=0.0, target_modules=common.LORA_TARGETS,
                                 task_type="CAUSAL_LM")
        started = time.perf_counter()
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(pairs),
                             processing_class=tokenizer, peft_config=peft_config)
        built = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "reference_s": built - started if fast else 0.0,
            "peak_rss_mb": common.peak_rss_mb(), "passes": records,
            "checkpointing": not fast, "head_recompute": True,
            "final_loss": output.training_loss}


CHILDREN = {"prefalign": child_prefalign, "trl": child_trl}


# -- parent -----------------------------------------------------------------------------
def run_kind(kind: str, side: str, settings: dict, spec: dict, work: Path,
             warm_cache: Path, index: int) -> dict:
    spec_path = work / f"spec-{kind}-{index}.json"
    common.write_json(spec_path, {**spec, **settings,
                                  "micro": min(settings["micro"], spec["batch_size"])})
    env = None
    if side == "prefalign":
        cache = warm_cache if settings["warm"] else common.fresh_cache(work / f"{kind}-{index}")
        env = {"PREFALIGN_CACHE": str(cache)}
    result = common.run_child(SCRIPT, side, spec_path, spec["threads"], env)
    if settings.get("warm") and result["reference_passes"] != 0:
        raise SystemExit("the warm run did not find its reference log-probs in the cache")
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        common.child_main(CHILDREN, sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser, default_out=SCRIPT.parent / "results" / "dpo.json")
    parser.add_argument("--ablation", action="store_true",
                        help="also run prefalign cold at batch 4 and without prefix sharing")
    args = parser.parse_args()
    runs = {**RUNS, **(ABLATIONS if args.ablation else {})}
    setup = common.prepare(args, SCRIPT)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = setup.spec(work, beta=0.1)
        warm_cache = common.fresh_cache(work / "warm")
        common.write_json(work / "fill.json", {**spec, "micro": 1, "sharing": True,
                                               "reference_only": True})
        common.run_child(SCRIPT, "prefalign", work / "fill.json", args.threads,
                         {"PREFALIGN_CACHE": str(warm_cache)})
        results = common.alternate(
            runs, args.reps,
            lambda kind, index: run_kind(kind, *runs[kind], spec, work, warm_cache, index))
    summary = {kind: common.summarise(runs_, setup.pairs, setup.shape, setup.peak_flops)
               for kind, runs_ in results.items()}
    fastest_trl = max(TRL_FAST, key=lambda kind: summary[kind]["pairs_per_s"])
    comparisons = {"prefalign-cold vs trl-default": ("prefalign-cold", "trl-default"),
                   f"prefalign-cold vs TRL fastest ({fastest_trl})":
                       ("prefalign-cold", fastest_trl),
                   "prefalign-warm vs trl-default": ("prefalign-warm", "trl-default")}
    if args.ablation:
        comparisons.update({
            "prefalign-cold-batch4 vs trl-default": ("prefalign-cold-batch4", "trl-default"),
            "prefalign-cold vs prefalign-cold-unshared":
                ("prefalign-cold", "prefalign-cold-unshared")})
    report = common.report("dpo", SCRIPT, setup, args, summary, comparisons, results)
    common.write_json(args.out, report)
    print(common.format_report(report))


if __name__ == "__main__":
    main()
