"""Shared fixtures: a tiny random chat model on disk and small data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefalign.models.tiny import save_tiny_model
from prefalign.tasks import arithmetic


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def sft_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "sft.jsonl", arithmetic.sft_records(48, seed=1))


@pytest.fixture
def preference_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", arithmetic.preference_records(48, seed=1))
