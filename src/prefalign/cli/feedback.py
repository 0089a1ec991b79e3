"""``prefalign data label`` (AI-feedback preference pairs), ``prefalign data synth-sft``
(judge-filtered SFT data) and ``prefalign data reference-samples`` (XPO's reference
samples); the work is in ``prefalign.stages.feedback``, ``prefalign.stages.synth_sft``
and ``prefalign.stages.sampling``."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import typer

from prefalign.errors import ConfigError

MODEL_OPTION = typer.Option(..., "--model", "-m", help="Policy that samples the responses: "
                            "'embedded', 'tiny', a saved model or adapter, or a hub id.",
                            show_default=False)
PROMPTS_OPTION = typer.Option(..., "--prompts", "-p", help="Prompt records ({'prompt': ...}, "
                              "extra fields kept): a .jsonl/.json/.parquet/.csv file, hf:NAME, "
                              "or a task source such as builtin:arithmetic?n=100.",
                              show_default=False)
OUT_OPTION = typer.Option(..., "--out", "-o", help="Output JSONL.", show_default=False)
SEED_OPTION = typer.Option(0, "--seed", help="Sampling seed (chunk c uses a seed derived "
                           "from it and c) and the random control's seed.")
TOKENS_OPTION = typer.Option(48, "--max-new-tokens", help="Longest sampled response, tokens.")
TEMPERATURE_OPTION = typer.Option(1.0, "--temperature", help="Sampling temperature (> 0).")
TOP_P_OPTION = typer.Option(1.0, "--top-p", help="Nucleus sampling threshold.")
BATCH_OPTION = typer.Option(8, "--batch-size", help="Prompts sampled and judged together.")
ENGINE_OPTION = typer.Option("auto", "--engine", help="Generation engine: auto, transformers "
                             "or vllm.")


def _sampler(model: str, samples: int, max_new_tokens: int, temperature: float, top_p: float,
             batch_size: int, engine: str, use_chat_template: bool = True):
    from prefalign.stages.sampling import PolicySampler, SamplerSettings

    if temperature <= 0:
        raise ConfigError(f"--temperature must be > 0 (got {temperature}): greedy decoding "
                          f"gives every sample the same text")
    if batch_size < 1 or max_new_tokens < 1:
        raise ConfigError("--batch-size and --max-new-tokens must be at least 1")
    return PolicySampler(model, SamplerSettings(
        samples=samples, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        batch_size=batch_size, engine=engine, use_chat_template=use_chat_template))


def _progress(label: str):
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - start, 1e-9)
        typer.echo(f"{label} {done}/{total} prompts ({rate:.2f}/s)", err=True)
    return report


def _read_constitution(path: Path | None) -> str:
    from prefalign.stages.feedback import default_constitution

    if path is None:
        return default_constitution()
    if not path.is_file():
        raise ConfigError(f"constitution file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ConfigError(f"{path}: the constitution is empty")
    return text


def label(
    model: str = MODEL_OPTION,
    prompts: str = PROMPTS_OPTION,
    judge: str = typer.Option(..., "--judge", "-j", help="Pairwise judge: lm:MODEL (e.g. "
                              "lm:embedded) or http:URL[#model].", show_default=False),
    constitution: Path | None = typer.Option(None, "--constitution", help="Principles the "
                                             "judge chooses by (default: the packaged "
                                             "helpful-and-harmless list)."),
    out: Path = OUT_OPTION,
    samples: int = typer.Option(2, "--samples", help="Responses per prompt (≥ 2); with more, "
                                "the judge's best and worst of a round robin form the pair."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help="Keep pairs "
                                                "with confidence ≥ C (0..1)."),
    random_control: Path | None = typer.Option(None, "--random-control", help="Also write a "
                                               "same-size random subset of all labelled pairs."),
    limit: int | None = typer.Option(None, "--limit", help="Label only the first N prompts "
                                     "(a later run with a larger N continues)."),
    seed: int = SEED_OPTION,
    max_new_tokens: int = TOKENS_OPTION,
    temperature: float = TEMPERATURE_OPTION,
    top_p: float = TOP_P_OPTION,
    batch_size: int = BATCH_OPTION,
    engine: str = ENGINE_OPTION,
) -> None:
    """Label preference pairs with AI feedback: sample responses, let a judge choose by a
    constitution, write {prompt, chosen, rejected, metadata.confidence}. Resumable."""
    from prefalign.data.load import dataset_fingerprint
    from prefalign.engine.rundir import atomic_write_text
    from prefalign.judges.base import build_judge, is_pairwise
    from prefalign.stages.feedback import LabelOutput, constitution_rubric, label_prompts
    from prefalign.tasks import load_source

    if samples < 2:
        raise ConfigError(f"--samples must be at least 2 (got {samples})")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise ConfigError(f"--min-confidence must be in [0, 1] (got {min_confidence})")
    records = load_source(prompts, "prompt")
    rubric = constitution_rubric(_read_constitution(constitution))
    rubric_file = out.with_name(out.stem + ".rubric.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rubric_file, rubric)
    built = build_judge(judge, rubric=str(rubric_file))
    if not is_pairwise(built):
        raise ConfigError(f"judge '{judge}' is not pairwise: labelling needs lm:MODEL or "
                          f"http:URL")
    sampler = _sampler(model, samples, max_new_tokens, temperature, top_p, batch_size, engine)
    settings = {"model": model, "judge": built.name, "prompts": dataset_fingerprint(records),
                "rubric": hashlib.sha256(rubric.encode()).hexdigest()[:16],
                "samples": samples, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p}
    summary = label_prompts(records, sampler, built,
                            LabelOutput(out, min_confidence, random_control, seed),
                            settings=settings, chunk_size=batch_size, seed=seed, limit=limit,
                            on_progress=_progress("labelled"))
    typer.echo(f"{summary.line()} -> {out}"
               + (f", control -> {random_control}" if random_control else ""))


def synth_sft(
    model: str = MODEL_OPTION,
    prompts: str = PROMPTS_OPTION,
    judge: str | None = typer.Option(None, "--judge", "-j", help="Pointwise judge: rm:PATH, "
                                     "hf-rm:ID or verifier:TASK (needs --threshold unless "
                                     "a verifier)."),
    verifier: str | None = typer.Option(None, "--verifier", help="Task whose verifier must "
                                        "accept a response (score ≥ 1)."),
    out: Path = OUT_OPTION,
    samples: int = typer.Option(4, "--samples", "-k", help="Responses per seed prompt."),
    threshold: float | None = typer.Option(None, "--threshold", help="Keep responses scored "
                                           "≥ X (default 1.0 for a verifier)."),
    seed: int = SEED_OPTION,
    max_new_tokens: int = TOKENS_OPTION,
    temperature: float = TEMPERATURE_OPTION,
    top_p: float = TOP_P_OPTION,
    batch_size: int = BATCH_OPTION,
    engine: str = ENGINE_OPTION,
) -> None:
    """Generate SFT data from seed prompts: sample K responses each, keep what a judge scores
    at or above a threshold or what a task verifier accepts. Resumable."""
    from prefalign.data.load import dataset_fingerprint
    from prefalign.judges.base import build_judge, is_pairwise
    from prefalign.stages.synth_sft import check_fields
    from prefalign.stages.synth_sft import synth_sft as run_synth
    from prefalign.tasks import load_source

    if (judge is None) == (verifier is None):
        raise ConfigError("give exactly one of --judge SPEC and --verifier TASK")
    spec = judge if judge is not None else f"verifier:{verifier}"
    if threshold is None:
        if not spec.startswith("verifier:"):
            raise ConfigError("--threshold is required with a reward-model judge")
        threshold = 1.0
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1 (got {samples})")
    records = load_source(prompts, "prompt")
    built = build_judge(spec)
    if is_pairwise(built):
        raise ConfigError(f"judge '{spec}' is pairwise: synth-sft needs a pointwise judge "
                          f"(rm:PATH, hf-rm:ID, verifier:TASK)")
    check_fields(built, records, prompts)
    sampler = _sampler(model, samples, max_new_tokens, temperature, top_p, batch_size, engine)
    settings = {"model": model, "judge": built.name, "prompts": dataset_fingerprint(records),
                "samples": samples, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p}
    summary = run_synth(records, sampler, built, out, threshold=threshold, settings=settings,
                        chunk_size=batch_size, seed=seed, on_progress=_progress("sampled"))
    typer.echo(f"{summary.line()} -> {out}")


def reference_samples(
    model: str = typer.Option(..., "--model", "-m", help="The reference model of the XPO run "
                              "(its starting policy): 'embedded', a saved model or adapter, or "
                              "a hub id.", show_default=False),
    pairs: str = typer.Option(..., "--pairs", "-p", help="Preference records: a .jsonl/.json/"
                              ".parquet/.csv file, hf:NAME, or a task source such as "
                              "builtin:arithmetic?n=100.", show_default=False),
    out: Path = OUT_OPTION,
    seed: int = typer.Option(0, "--seed", help="Sampling seed (chunk c uses a seed derived "
                             "from it and c)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Longest sample, "
                                       "tokens."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts sampled together."),
    engine: str = ENGINE_OPTION,
    chat_template: bool = typer.Option(True, "--chat-template/--no-chat-template",
                                       help="Render prompts as the training run will "
                                       "(data.use_chat_template)."),
) -> None:
    """Add to each preference record a `reference_sample`: one reply to its prompt sampled
    from the reference model at temperature 1 (what loss.name=xpo reads)."""
    from prefalign.data.load import write_jsonl
    from prefalign.stages.sampling import add_reference_samples
    from prefalign.tasks import load_source

    records = load_source(pairs, "preference")
    sampler = _sampler(model, 1, max_new_tokens, 1.0, 1.0, batch_size, engine, chat_template)
    sampled, empty = add_reference_samples(records, sampler, seed=seed, chunk_size=batch_size,
                                           on_progress=_progress("sampled"))
    write_jsonl(sampled, out)
    typer.echo(f"{len(sampled)} of {len(records)} records with a reference sample"
               + (f" ({empty} dropped: empty sample)" if empty else "") + f" -> {out}")


def register(data_app: typer.Typer) -> None:
    """Add ``label``, ``synth-sft`` and ``reference-samples`` to the ``data`` app."""
    data_app.command("label")(label)
    data_app.command("synth-sft")(synth_sft)
    data_app.command("reference-samples")(reference_samples)
