"""``prefalign plan``, ``plan measure``, ``export`` and ``launch``: scale-out commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from prefalign.errors import ConfigError

plan_app = typer.Typer(
    help="Per-device memory of a training job before it is launched: weights, gradients, "
         "optimizer state, activations, reference, logits; whether it fits, and the cheapest "
         "change that makes it fit.",
    invoke_without_command=True,
)


def _shape(model, params, hidden, layers, vocab, heads, kv_heads, intermediate, head_dim,
           tied):
    from prefalign.plan.shape import llama_shape, load_shape, with_declared_params

    if model is not None:
        return with_declared_params(load_shape(model), params)
    if not (hidden and layers and vocab):
        raise ConfigError("give --model (hub id, local path, 'embedded') or the architecture: "
                          "--hidden, --layers and --vocab (with --heads, --kv-heads, "
                          "--intermediate, --params as known)")
    return llama_shape(hidden=hidden, layers=layers, vocab=vocab, heads=heads,
                       kv_heads=kv_heads, intermediate=intermediate, head_dim=head_dim,
                       tied_embeddings=tied, params=params)


@plan_app.callback()
def plan(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Hub id, local model "
                                        "folder, 'embedded' or 'tiny' (only its config is read)."),
    params: float | None = typer.Option(None, "--params", help="Parameter count (e.g. "
                                           "6.74e9); overrides the count from the shape."),
    hidden: int | None = typer.Option(None, "--hidden", help="Hidden size h."),
    layers: int | None = typer.Option(None, "--layers", help="Decoder layers L."),
    vocab: int | None = typer.Option(None, "--vocab", help="Vocabulary size V."),
    heads: int | None = typer.Option(None, "--heads", help="Attention heads (default h/128)."),
    kv_heads: int | None = typer.Option(None, "--kv-heads", help="Key/value heads "
                                           "(default: heads)."),
    intermediate: int | None = typer.Option(None, "--intermediate", help="MLP width f "
                                               "(default: Llama's 8h/3 rounded up to 256)."),
    head_dim: int | None = typer.Option(None, "--head-dim", help="Head size (default h/heads)."),
    tied: bool = typer.Option(False, "--tied/--untied", help="Embeddings tied to the LM head."),
    stage: str = typer.Option("sft", "--stage", help="sft, rm, dpo, ppo or grpo."),
    method: str = typer.Option("lora", "--method", help="full, lora or qlora."),
    precision: str = typer.Option("bf16", "--precision", help="fp32, bf16, fp16, mixed (half "
                                  "weights + fp32 master + Adam: 16 bytes/param) or amp."),
    fp32_grads: bool = typer.Option(False, "--fp32-grads", help="Keep gradients in fp32 "
                                    "(mixed: 18 bytes/param)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Micro-batch per device (prompts, "
                                   "pairs or sequences)."),
    seq_len: int = typer.Option(512, "--seq-len", help="Tokens per row (prompt + completion)."),
    completion_len: int | None = typer.Option(None, "--completion-len", help="Completion "
                                                 "tokens per row (default seq-len/2)."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step."),
    devices: int = typer.Option(1, "--devices", help="Number of devices (GPUs)."),
    strategy: str = typer.Option("none", "--strategy", help="none, ddp, zero1, zero2, zero3, "
                                 "fsdp, zero2-offload, zero3-offload, fsdp-offload."),
    checkpointing: bool = typer.Option(False, "--checkpointing/--no-checkpointing",
                                       help="Activation checkpointing."),
    reference: str = typer.Option("auto", "--reference", help="Where the reference lives: "
                                  "auto, none, precomputed, adapter, device, cpu."),
    lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank."),
    lora_targets: str = typer.Option("attention", "--lora-targets", help="attention or "
                                     "all-linear."),
    prefix_sharing: bool = typer.Option(True, "--prefix-sharing/--no-prefix-sharing",
                                        help="DPO: one [prompt | chosen | rejected] row per "
                                        "pair (prefalign's default) instead of two rows."),
    device_memory: str | None = typer.Option(None, "--device-memory", help="Memory of one "
                                                "device, e.g. 80GB or 79.6GiB: say whether it "
                                                "fits and what makes it fit."),
    overhead: str | None = typer.Option(None, "--overhead", help="Runtime overhead to add "
                                           "(CUDA context, fragmentation), e.g. 1.5GB."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON (bytes)."),
) -> None:
    """Plan the per-device memory of a training job (see `prefalign plan measure`)."""
    if ctx.invoked_subcommand is not None:
        return
    from prefalign.plan.advice import cheapest_fix
    from prefalign.plan.planner import PlanRequest, plan_memory
    from prefalign.plan.render import parse_size, plan_as_dict, render_plan

    shape = _shape(model, params, hidden, layers, vocab, heads, kv_heads, intermediate,
                   head_dim, tied)
    request = PlanRequest(
        stage=stage, method=method, precision=precision, fp32_grads=fp32_grads,
        batch_size=batch_size, seq_len=seq_len, completion_len=completion_len,
        grad_accum=grad_accum, devices=devices, strategy=strategy, checkpointing=checkpointing,
        reference=reference, lora_r=lora_r, lora_targets=lora_targets,
        prefix_sharing=prefix_sharing, overhead_bytes=parse_size(overhead) if overhead else 0.0)
    result = plan_memory(shape, request)
    limit = parse_size(device_memory) if device_memory else None
    fix = cheapest_fix(shape, request, limit) if limit and not result.fits(limit) else None
    if as_json:
        typer.echo(json.dumps(plan_as_dict(result, limit, fix), indent=2))
    else:
        typer.echo(render_plan(result, limit, fix))


@plan_app.command("measure")
def measure(
    stage: str = typer.Option("sft", "--stage", help="sft or dpo."),
    method: str = typer.Option("lora", "--method", help="full or lora."),
    table: bool = typer.Option(False, "--table", help="Measure all four of sft/dpo × "
                               "lora/full (one after another)."),
    model: str = typer.Option("embedded", "--model", "-m", help="Model to run."),
    batch_size: int = typer.Option(4, "--batch-size", help="Examples per micro-batch."),
    prompt_words: int = typer.Option(64, "--prompt-words", help="Prompt length (one token "
                                     "per word)."),
    completion_words: int = typer.Option(64, "--completion-words", help="Completion length."),
    steps: int = typer.Option(3, "--steps", help="Steps to run (peak taken over 2..steps)."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads of the run."),
    allocator: str = typer.Option("live", "--allocator", help="live (RSS tracks live "
                                  "tensors), glibc (default malloc) or both."),
) -> None:
    """Run a few real steps in a subprocess and compare the peak memory with the plan."""
    from prefalign.plan.measure import MeasureCase, markdown_table
    from prefalign.plan.measure import measure as measure_case

    kinds = [(s, m) for s in ("sft", "dpo") for m in ("lora", "full")] if table \
        else [(stage, method)]
    allocators = ["live", "glibc"] if allocator == "both" else [allocator]
    rows = []
    for stage_name, method_name in kinds:
        case = MeasureCase(stage=stage_name, method=method_name, batch_size=batch_size,
                           prompt_words=prompt_words, completion_words=completion_words,
                           steps=steps, model=model, threads=threads)
        for name in allocators:
            typer.echo(f"measuring {stage_name} {method_name} ({name} allocator)...", err=True)
            rows.append(measure_case(case, name))
    typer.echo(markdown_table(rows))


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add ``plan`` (with ``plan measure``), ``export`` and ``launch`` to the root app."""
    app.add_typer(plan_app, name="plan")

    @app.command("export")
    def export(
        source: Path = typer.Argument(..., help="Run directory (uses its final/) or a model "
                                      "or adapter folder.", show_default=False),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder.", show_default=False),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16."),
        push_to_hub: str | None = typer.Option(None, "--push-to-hub", help="Also upload to "
                                                  "this Hub repo (owner/name)."),
        token: str | None = typer.Option(None, "--token", help="Hub token (default: "
                                            "HF_TOKEN or the saved login)."),
        private: bool = typer.Option(False, "--private", help="Create the Hub repo private."),
    ) -> None:
        """Merge LoRA adapters into full safetensors weights and write a model card."""
        from prefalign.export import export_model

        result = export_model(source, out, dtype=dtype, push_to=push_to_hub, token=token,
                              private=private)
        what = "merged LoRA adapters" if result.merged_adapter else "full weights"
        typer.echo(f"exported {what} ({result.parameters:,} parameters) from {result.source} "
                   f"to {result.out_dir}" + (f"; pushed to {result.pushed_to}"
                                             if result.pushed_to else ""))

    @app.command("launch", context_settings={"ignore_unknown_options": True,
                                             "allow_interspersed_args": False})
    def launch(
        stage_args: list[str] = typer.Argument(..., help="The stage command and its "
                                               "arguments, e.g. sft -c configs/sft.yaml.",
                                               show_default=False),
        accelerate_config: str = typer.Option("cpu-ddp", "--accelerate-config", "-a",
                                              help="A config path, or a shipped name: "
                                              "cpu-ddp, ddp, fsdp, fsdp-offload, zero2, zero3, "
                                              "zero3-offload."),
        num_processes: int | None = typer.Option(None, "--num-processes", "-n",
                                                    help="Override the config's process count."),
        port: int | None = typer.Option(None, "--port", help="Rendezvous port of the "
                                           "main process."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the command, run nothing."),
    ) -> None:
        """Run a stage on several processes or GPUs through `accelerate launch`."""
        from prefalign.engine.launcher import launch as run_launch
        from prefalign.engine.launcher import launch_command

        if dry_run:
            typer.echo(" ".join(launch_command(stage_args, accelerate_config, num_processes,
                                               port)))
            return
        code = run_launch(stage_args, accelerate_config, num_processes, port)
        if code:
            raise typer.Exit(code)
