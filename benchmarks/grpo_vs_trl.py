"""Online RL with LoRA: prefalign's GRPO (or RLOO) against TRL's ``GRPOTrainer``
(``RLOOTrainer``) on the same work, the whole step timed.

GRPO: Shao et al. 2024, arXiv 2402.03300, with the token-level loss of DAPO (Yu et
al. 2025, arXiv 2503.14476): TRL's default ``loss_type="dapo"`` over one micro-batch
per generation is prefalign's ``policy.reduction=token``, the same objective
(``tests/test_trl_grpo_exactness.py`` checks loss and gradients). RLOO: Ahmadian et
al. 2024, arXiv 2402.14740; both trainers put β·Σ_t (log π_old − log π_ref) into the
reward and use the leave-one-out baseline; TRL's loss clips a sequence-level ratio
and averages over sequences, prefalign's clips per token, here with
``policy.reduction=constant`` (Σ over tokens / (B·max_new_tokens)), so on-policy its
gradient is TRL's divided by ``max_new_tokens``
(``tests/test_trl_rloo_exactness.py`` checks advantages, losses and gradients).

Both sides train the same model (default the embedded SmolLM2-135M-Instruct) in fp32
on CPU, LoRA r=16 (alpha 32, no dropout) on q/k/v/o, on the built-in arithmetic
prompts (``builtin:arithmetic``, one epoch: steps × prompts per step, chat template
applied by each side), ``--group`` completions per prompt sampled at temperature 1
(top-p 1, top-k off) up to ``--max-new-tokens``, the arithmetic verifier as reward
(prefalign's, called by both), β = ``--beta`` with the reference being the policy
with its adapters disabled, ε = 0.2, one optimizer update per rollout (TRL
``num_iterations=1``), learning rate 5e-5 (linear decay, no warmup), gradient clipping
at 1.0, the same number of optimizer steps and threads; TRL generates with
transformers (``use_vllm=False``). Differences that remain: the group std of GRPO's
advantages (TRL Bessel-corrected + 1e-4, prefalign population + 1e-6); TRL's default
``use_bias_correction_kl`` (a gradient term, not a cost); the prompts' order.

Runs: ``prefalign`` (the online stage's ``RolloutAlgorithm`` on the Engine, the
whole step as one micro-batch: prompts prefix-shared across their group in
generation and in the training forward); ``prefalign-micro`` (the same, the update
in micro-batches of one prompt's group, ``train.batch_size`` = group,
``train.grad_accum`` = prompts per step: the same objective and step, as the token
loss is weighted by each micro-batch's share of the step's tokens, with one group's
activations alive at a time); ``trl-default`` (``GRPOConfig`` /
``RLOOConfig`` defaults except fp32 and the shared settings: activation
checkpointing on); ``trl-fast`` (no activation checkpointing). Each run is a child
process, the kinds alternate in a rotated order each repetition, and medians are
reported. Timed: from building the trainer to the end of training (loading the
model is not timed), with the time split into building the trainer (setup),
generation, reward scoring, no-grad log-prob passes (reference, and π_old for RLOO)
and the rest (update: training forward, backward, optimizer, bookkeeping). Peak
resident memory is the child's ``ru_maxrss``. ``--min-new-tokens`` bars the
end-of-sequence token below that length on both sides (``rollout.min_new_tokens``,
TRL's ``generation_kwargs``): with it equal to ``--max-new-tokens`` every completion
has that length, as the memory-scaling benchmark (``grpo_memory.py``) needs.

Work: GFLOP per pair is the model FLOPs of the plain computation of one sample — a
forward over prompt + completion to generate it, one for the reference, and a
forward and backward for the update (``common.TransformerShape`` at the run's mean
prompt and completion lengths) — the same count for both sides, so GFLOP/s is useful
work per second and its share of the fp32 matmul rate measured on the same threads is
the model-FLOP utilisation. Work a side saves (prefix sharing) or adds (activation
recomputation, padding) shows in the time, not in the count.

    python benchmarks/grpo_vs_trl.py [--algorithm grpo|rloo] [--steps 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SCRIPT = Path(__file__).resolve()
ALGORITHMS = ("grpo", "rloo")
RUNS = {"prefalign": ("prefalign", {}), "prefalign-micro": ("prefalign", {"micro_groups": 1}),
        "trl-default": ("trl", {"fast": False}), "trl-fast": ("trl", {"fast": True})}
OURS = tuple(kind for kind, (side, _) in RUNS.items() if side == "prefalign")
PHASES = ("setup", "generate", "reward", "logprobs")
REWARD = "arithmetic"


class Phases:
    """Seconds spent in each phase, and the completion tokens generated."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.tokens = 0

    def wrap(self, owner, name: str, phase: str, when=None, tokens=None) -> None:
        """Time every call of ``owner.name`` (those where ``when()`` holds) as ``phase``;
        ``tokens(result)`` counts the completion tokens a call returns."""
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            if when is not None and not when():
                return inner(*args, **kwargs)
            started = time.perf_counter()
            result = inner(*args, **kwargs)
            self.seconds[phase] += time.perf_counter() - started
            if tokens is not None:
                self.tokens += tokens(result)
            return result

        setattr(owner, name, timed)

    def result(self, seconds: float) -> dict:
        update = seconds - sum(self.seconds.values())
        return {"seconds": seconds, "phases": {**self.seconds, "update": update},
                "completion_tokens": self.tokens, "peak_rss_mb": common.peak_rss_mb()}


# -- children ---------------------------------------------------------------------------
def child_prefalign(spec: dict) -> dict:
    from prefalign.stages.lifecycle import Lifecycle
    from prefalign.stages.online import load_online_config
    from prefalign.stages.online.registry import get_online_algorithm
    from prefalign.stages.online.rollout_algorithm import RolloutAlgorithm
    from prefalign.stages.online.run import build_setup, validate_inputs

    micro_groups = spec.get("micro_groups", spec["prompts_per_step"])
    micro_sequences = micro_groups * spec["group"]
    targets = ",".join(common.LORA_TARGETS)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_online_config(spec["algorithm"], None, [
            f"model.name={spec['model']}", "model.dtype=float32",
            f"model.gradient_checkpointing={str(spec.get('checkpointing', False)).lower()}",
            f"model.lora.r={spec['lora_rank']}", f"model.lora.alpha={2 * spec['lora_rank']}",
            "model.lora.dropout=0.0", f"model.lora.target_modules=[{targets}]",
            f"data.train={spec['prompts']}", "data.eval_fraction=0",
            f"rewards=[{{name: {REWARD}}}]", "rollout.engine=transformers",
            f"rollout.prompts_per_rollout={spec['prompts_per_step']}",
            f"rollout.num_samples={spec['group']}",
            f"rollout.max_new_tokens={spec['max_new_tokens']}", "rollout.temperature=1.0",
            f"rollout.min_new_tokens={spec['min_new_tokens']}",
            f"kl.coef={spec['beta']}", "policy.clip_eps=0.2",
            f"policy.reduction={'token' if spec['algorithm'] == 'grpo' else 'constant'}",
            f"train.lr={spec['lr']}", f"train.max_steps={spec['steps']}",
            f"train.batch_size={micro_sequences}",
            f"train.grad_accum={spec['prompts_per_step'] // micro_groups}",
            "train.scheduler=linear", "train.warmup_ratio=0.0", "train.save_every=0",
            f"train.seed={spec['seed']}",
            f"train.threads={spec['threads']}", f"output_dir={out}", "name=bench"])
        algorithm_spec = get_online_algorithm(cfg.algorithm)
        train, held_out, scorer, judge = validate_inputs(cfg)
        life = Lifecycle(cfg, cfg.algorithm)
        life.setup()
        models = life.load_models(needs_reference=True)
        phases = Phases()
        started = time.perf_counter()
        setup = build_setup(life, algorithm_spec, models, train, held_out, scorer, judge)
        algorithm = RolloutAlgorithm(setup, algorithm_spec)
        phases.seconds["setup"] = time.perf_counter() - started
        phases.wrap(setup.engine, "generate", "generate",
                    tokens=lambda groups: sum(len(c.token_ids) for g in groups for c in g))
        phases.wrap(setup.scorer, "score", "reward")
        phases.wrap(algorithm, "_record_logps", "logprobs")
        result = life.train(setup.policy, algorithm)
        return {**phases.result(time.perf_counter() - started),
                "final_loss": result.last_metrics.get("loss")}


def child_trl(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from prefalign.rewards import build_reward
    from prefalign.stages.online.scoring import prompt_text

    verifier = build_reward(REWARD)

    def arithmetic(prompts, completions, answer, **kwargs) -> list[float]:
        texts = [prompt_text(p) for p in prompts]
        rows = [{"prompt": t, "answer": a} for t, a in zip(texts, answer)]
        return verifier(texts, [c[-1]["content"] for c in completions], rows).tolist()

    records = [json.loads(line) for line in Path(spec["prompts"]).read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                                  "answer": r["answer"]} for r in records])
    model = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=torch.float32,
                                                 attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    config_class, trainer_class = ((GRPOConfig, GRPOTrainer) if spec["algorithm"] == "grpo"
                                   else (RLOOConfig, RLOOTrainer))
    with tempfile.TemporaryDirectory() as out:
        config = config_class(
            output_dir=out, per_device_train_batch_size=spec["prompts_per_step"] * spec["group"],
            gradient_accumulation_steps=1, num_generations=spec["group"],
            max_completion_length=spec["max_new_tokens"], temperature=1.0, beta=spec["beta"],
            epsilon=0.2, num_iterations=1, use_vllm=False, learning_rate=spec["lr"],
            lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0,
            max_steps=spec["steps"], bf16=False, use_cpu=True, report_to="none",
            save_strategy="no", seed=spec["seed"], disable_tqdm=True,
            gradient_checkpointing=not spec["fast"],
            generation_kwargs={"min_new_tokens": spec["min_new_tokens"]})
        peft_config = LoraConfig(r=spec["lora_rank"], lora_alpha=2 * spec["lora_rank"],
                                 lora_dropout=0.0, target_modules=common.LORA_TARGETS,
                                 task_type="CAUSAL_LM")
        phases = Phases()
        started = time.perf_counter()
        trainer = trainer_class(model=model, reward_funcs=arithmetic, args=config,
                                train_dataset=dataset, processing_class=tokenizer,
                                peft_config=peft_config)
        phases.seconds["setup"] = time.perf_counter() - started
        phases.wrap(trainer, "_generate", "generate",
                    tokens=lambda result: sum(len(ids) for ids in result[1]))
        phases.wrap(trainer, "_calculate_rewards", "reward")
        phases.wrap(trainer, "_get_per_token_logps_and_entropies", "logprobs",
                    when=lambda: not torch.is_grad_enabled())
        output = trainer.train()
        return {**phases.result(time.perf_counter() - started),
                "final_loss": output.training_loss}


CHILDREN = {"prefalign": child_prefalign, "trl": child_trl}


# -- parent -----------------------------------------------------------------------------
def plain_flops(shape: common.TransformerShape, prompt: float, completion: float,
                 reference: bool) -> float:
    """Model FLOPs of one sample computed plainly: generation (a forward over prompt +
    completion), the reference forward when there is one, and the update's forward and
    backward; the LM head over the completion positions in each pass."""
    length, positions = round(prompt + completion), round(completion)
    forward = shape.decoder_forward(1, length) + shape.head(positions)
    backward = shape.decoder_backward(1, length) + shape.head(positions)
    return forward * (3 if reference else 2) + backward


def summarise(results: list[dict], pairs: int, work: dict) -> dict:
    """Medians over the runs of one kind; ``pairs``: (prompt, completion) pairs per run;
    ``work``: the model shape, mean prompt length, reference flag and matmul rate."""
    median = common.median
    flops = [pairs * plain_flops(work["shape"], work["prompt_tokens"],
                                 r["completion_tokens"] / pairs, work["reference"])
             for r in results]
    rate = median([f / r["seconds"] for f, r in zip(flops, results)])
    return {"runs": len(results), "seconds": median([r["seconds"] for r in results]),
            "gflop_per_pair": median(flops) / pairs / 1e9, "gflops": rate / 1e9,
            "fraction_of_peak": rate / work["peak_flops"],
            "pairs_per_s": median([pairs / r["seconds"] for r in results]),
            "completion_tokens_per_s": median([r["completion_tokens"] / r["seconds"]
                                               for r in results]),
            "mean_completion_tokens": median([r["completion_tokens"] / pairs for r in results]),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in results]),
            "phases": {phase: median([r["phases"][phase] for r in results])
                       for phase in (*PHASES, "update")}}


def format_report(data: dict) -> str:
    """The summary and ratio tables of one online benchmark, in markdown."""
    rows = [[kind, f"{s['pairs_per_s']:.3f}", f"{s['completion_tokens_per_s']:.1f}",
             f"{s['mean_completion_tokens']:.1f}", f"{s['peak_rss_mb']:.0f}",
             *(f"{s['phases'][phase]:.1f}" for phase in (*PHASES, "update")),
             f"{s['gflop_per_pair']:.1f}", f"{s['gflops']:.1f}",
             f"{100 * s['fraction_of_peak']:.0f}%"]
            for kind, s in data["summary"].items()]
    table = common.markdown_table(
        ["run", "pairs/s", "completion tokens/s", "tokens/completion", "peak RSS MiB",
         "setup s", "generate s", "reward s", "no-grad log-probs s", "update s",
         "GFLOP/pair", "GFLOP/s", "of matmul rate"], rows)
    ratios = common.markdown_table(
        ["comparison", "pairs/s", "peak RSS"],
        [[label, f"{r['pairs_per_s']:.2f}×", f"{r['peak_rss']:.2f}×"]
         for label, r in data["ratios"].items()])
    return (f"{table}\n\n{ratios}\n\nA pair is one (prompt, completion); the phase columns "
            "are seconds per run (medians), the update being the rest of the timed run. "
            f"Mean prompt: {data['prompt_tokens']:.1f} tokens; fp32 matmul rate of this "
            f"machine ({data['threads']} threads): {data['matmul_gflops']:.1f} GFLOP/s.")


def build_spec(args, work: Path) -> tuple[dict, str]:
    """The child spec of one benchmark (prompts written to ``work``) and its data source."""
    from prefalign.models.embedded import embedded_path
    from prefalign.tasks import load_source

    source = f"builtin:arithmetic?n={args.steps * args.prompts_per_step}&seed={args.seed}"
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in load_source(source, "prompt")))
    model_path = embedded_path() if args.model == "embedded" else Path(args.model).resolve()
    spec = {"algorithm": args.algorithm, "prompts": str(prompts), "steps": args.steps,
            "prompts_per_step": args.prompts_per_step, "group": args.group,
            "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
            "beta": args.beta, "lr": 5e-5, "lora_rank": 16, "threads": args.threads,
            "seed": args.seed, "model": args.model if args.model == "embedded"
            else str(model_path), "model_path": str(model_path)}
    return spec, source


def mean_prompt_tokens(spec: dict) -> float:
    """Mean length of the benchmark's prompts under the model's chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    records = [json.loads(line) for line in Path(spec["prompts"]).read_text().splitlines()]
    lengths = [len(tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                                 add_generation_prompt=True, tokenize=True,
                                                 return_dict=False)) for r in records]
    return sum(lengths) / len(lengths)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        common.child_main(CHILDREN, sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="grpo")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--reps", type=int, default=3, help="runs of each kind")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--min-new-tokens", type=int, default=0,
                        help="bar the end-of-sequence token below this length")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="embedded",
                        help="'embedded' or a local model directory")
    parser.add_argument("--out", type=Path, help="JSON results file "
                        "(default benchmarks/results/<algorithm>.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec, source = build_spec(args, work)

        def run(kind: str, index: int) -> dict:
            side, settings = RUNS[kind]
            path = work / f"spec-{kind}-{index}.json"
            common.write_json(path, {**spec, **settings})
            return common.run_child(SCRIPT, side, path, args.threads)

        results = common.alternate(RUNS, args.reps, run)
        prompt_length = mean_prompt_tokens(spec)
    peak = common.measure_matmul(SCRIPT, args.threads)
    from transformers import AutoConfig

    shape = common.TransformerShape.from_config(AutoConfig.from_pretrained(spec["model_path"]),
                                                lora_rank=spec["lora_rank"])
    work_model = {"shape": shape, "prompt_tokens": prompt_length, "reference": args.beta > 0,
                  "peak_flops": peak}
    count = args.steps * args.prompts_per_step
    summary = {kind: summarise(runs, count * args.group, work_model)
               for kind, runs in results.items()}
    ratios = {f"{ours} vs {theirs}": {
        "pairs_per_s": summary[ours]["pairs_per_s"] / summary[theirs]["pairs_per_s"],
        "peak_rss": summary[ours]["peak_rss_mb"] / summary[theirs]["peak_rss_mb"]}
        for ours in OURS for theirs in RUNS if theirs not in OURS}
    report = {"benchmark": args.algorithm, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
              "command": " ".join(["python", str(SCRIPT.relative_to(common.REPO))]
                                  + sys.argv[1:]),
              "machine": common.machine(), "versions": common.versions(),
              "model": args.model, "data": source, "prompts": count, "steps": args.steps,
              "prompts_per_step": args.prompts_per_step, "group": args.group,
              "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
              "beta": args.beta, "prompt_tokens": prompt_length, "matmul_gflops": peak / 1e9,
              "threads": args.threads, "reps": args.reps, "summary": summary,
              "ratios": ratios, "raw": results}
    common.write_json(args.out or SCRIPT.parent / "results" / f"{args.algorithm}.json", report)
    print(format_report(report))


if __name__ == "__main__":
    main()
