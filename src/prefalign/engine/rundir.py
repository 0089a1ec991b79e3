"""The run directory: the unit of output of every stage.

``runs/<name>/{config.yaml, manifest.json, metrics.jsonl, checkpoints/, final/,
report.md, figures/}``. Every file is written atomically (temp file in the same
folder, then ``os.replace``) so a killed run never leaves a half-written file
that a resume would trust.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefalign.config import config_to_yaml


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def git_revision() -> str | None:
    """The git commit of the prefalign checkout, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    names = ["prefalign", "torch", "transformers", "peft", "accelerate", "datasets"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class RunDir:
    """Paths and writers for one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def create(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def write_config(self, config: BaseModel) -> None:
        atomic_write_text(self.config_path, config_to_yaml(config))

    def write_manifest(self, *, stage: str, seed: int, model_source: str,
                       datasets: dict[str, str], extra: dict[str, Any] | None = None) -> None:
        """Record what produced this run: versions, seed, git revision, data, model."""
        manifest = {
            "stage": stage,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": seed,
            "git_revision": git_revision(),
            "versions": package_versions(),
            "platform": platform.platform(),
            "model_source": model_source,
            "dataset_fingerprints": datasets,
        }
        if extra:
            manifest.update(extra)
        atomic_write_json(self.manifest_path, manifest)
