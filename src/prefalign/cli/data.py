"""``prefalign data ...``: validate, split, inspect and convert data files."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from prefalign.data.convert import convert_file
from prefalign.data.load import canonical_json, dataset_fingerprint, write_jsonl
from prefalign.data.schema import RECORD_KINDS
from prefalign.data.split import check_leakage, parse_fractions, split_records
from prefalign.data.tokenize import token_length_stats
from prefalign.tasks import content_key, load_source

data_app = typer.Typer(
    help="Check, split, inspect and convert data files (.jsonl, .json, .parquet, .csv, hf:NAME) "
    "and task sources (builtin:arithmetic?n=600, countdown:n=500, ...).",
    no_args_is_help=True,
)

RecordKind = Enum("RecordKind", {kind: kind for kind in RECORD_KINDS}, type=str)

SOURCE_ARGUMENT = typer.Argument(..., help="Data file (.jsonl, .json, .parquet, .csv), a "
                                 "Hub dataset hf:NAME, hf:NAME:SPLIT, hf:NAME/CONFIG:SPLIT, or a "
                                 "task source: builtin:arithmetic?n=600&seed=0, "
                                 "countdown:n=500&seed=0, minigrid:seeds=0-9, a GSM8K folder.",
                                 show_default=False)
KIND_OPTION = typer.Option(..., "--kind", "-k", help="Record kind of every row.",
                           show_default=False)
OUT_OPTION = typer.Option(..., "--out", "-o", help="Directory for NAME.jsonl per split.",
                          show_default=False)
FRACTIONS_OPTION = typer.Option("train=0.9,val=0.1", "--fractions",
                                help="Comma-separated NAME=FRACTION, summing to 1.")
SEED_OPTION = typer.Option(0, "--seed", help="Seed of the content hash that assigns splits.")
COUNT_OPTION = typer.Option(3, "--n", help="How many records to print.")
MODEL_OPTION = typer.Option(None, "--model", help="Model (hub id, local path or 'embedded') "
                            "whose tokenizer measures token lengths; none: no length statistics.")
CHAT_TEMPLATE_OPTION = typer.Option(True, "--chat-template/--no-chat-template",
                                    help="Render text through the tokenizer's chat template.")
HH_SOURCE_ARGUMENT = typer.Argument(..., help="Raw hh-rlhf file with chosen/rejected "
                                    "transcripts.", show_default=False)
HH_OUTPUT_ARGUMENT = typer.Argument(..., help="Output JSONL of preference records.",
                                    show_default=False)


def _unique_prompts(records: list[dict]) -> int:
    return len({canonical_json(record["prompt"]) for record in records})


@data_app.command()
def validate(source: str = SOURCE_ARGUMENT, kind: RecordKind = KIND_OPTION) -> None:
    """Check every row; print counts and OK, or the first problem with its file and line."""
    records = load_source(source, kind.value)
    typer.echo(f"{source}: {len(records)} {kind.value} records, {_unique_prompts(records)} "
               f"unique prompts, fingerprint {dataset_fingerprint(records)}")
    typer.echo("OK")


@data_app.command()
def split(
    source: str = SOURCE_ARGUMENT,
    kind: RecordKind = KIND_OPTION,
    out: Path = OUT_OPTION,
    fractions: str = FRACTIONS_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Split by content hash (no problem in two splits: the task's content key, else the
    prompt) and write one JSONL per split."""
    shares = parse_fractions(fractions)
    key = content_key(source, kind.value)
    splits = split_records(load_source(source, kind.value), shares, seed=seed, key=key)
    check_leakage(splits, key=key)
    for name, records in splits.items():
        path = write_jsonl(records, out / f"{name}.jsonl")
        typer.echo(f"{name}: {len(records)} records -> {path}")


@data_app.command("inspect")
def inspect_records(
    source: str = SOURCE_ARGUMENT,
    kind: RecordKind = KIND_OPTION,
    n: int = COUNT_OPTION,
    model: str | None = MODEL_OPTION,
    chat_template: bool = CHAT_TEMPLATE_OPTION,
) -> None:
    """Print the first records and, with --model, prompt/completion token lengths."""
    records = load_source(source, kind.value)
    typer.echo(f"{source}: {len(records)} {kind.value} records, fingerprint "
               f"{dataset_fingerprint(records)}")
    for index, record in enumerate(records[:max(n, 0)]):
        typer.echo(f"--- record {index}")
        typer.echo(json.dumps(record, ensure_ascii=False, indent=2))
    if model is not None:
        from prefalign.models.load import load_tokenizer

        stats = token_length_stats(records, kind.value, load_tokenizer(model), chat_template)
        for part, summary in stats.items():
            typer.echo(f"{part} tokens: " + ", ".join(f"{name} {value:g}"
                                                      for name, value in summary.items()))


@data_app.command("convert-hh")
def convert_hh(
    src: str = HH_SOURCE_ARGUMENT,
    dst: Path = HH_OUTPUT_ARGUMENT,
) -> None:
    """Convert hh-rlhf transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...") to preference rows."""
    counts = convert_file(src, dst, fmt="hh")
    typer.echo(f"{counts.summary()} -> {dst}")
