"""``PIPELINES``: the one registry of staged pipelines, and which one a config file is for.

A pipeline module registers itself at import with ``register_pipeline(Pipeline(...))``.
Every module and subpackage of ``prefalign.pipeline`` is imported before the first
lookup, so a new pipeline is one new package here (or any module that registers
before its pipeline is used). A task names its pipeline by this name
(``Task.pipeline``); tasks never import pipelines.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from prefalign.config import load_config
from prefalign.config.pipeline import DEFAULT_PIPELINE, PipelineConfig
from prefalign.discovery import import_submodules
from prefalign.errors import ConfigError
from prefalign.pipeline.base import Pipeline

PIPELINES: dict[str, Pipeline] = {}
_PACKAGE = "prefalign.pipeline"


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    """Add ``pipeline`` to ``PIPELINES``; another pipeline under a taken name is an error."""
    existing = PIPELINES.get(pipeline.name)
    if existing is not None and existing is not pipeline:
        raise ValueError(f"pipeline '{pipeline.name}' is already registered")
    PIPELINES[pipeline.name] = pipeline
    return pipeline


def discover_pipelines() -> None:
    """Import every module of ``prefalign.pipeline`` once, so their pipelines register."""
    import_submodules(_PACKAGE)


def get_pipeline(name: str) -> Pipeline:
    """The pipeline registered as ``name``; an unknown name is a ``ConfigError`` listing them."""
    discover_pipelines()
    if name not in PIPELINES:
        close = difflib.get_close_matches(name, list(PIPELINES), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown pipeline '{name}'; {hint}pipelines: "
                          f"{', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


def pipeline_of(cfg: PipelineConfig) -> Pipeline:
    """The pipeline a validated config belongs to."""
    pipeline = get_pipeline(cfg.pipeline or DEFAULT_PIPELINE)
    if not isinstance(cfg, pipeline.config):
        raise ConfigError(f"a {type(cfg).__name__} is not a config of pipeline "
                          f"'{pipeline.name}' ({pipeline.config.__name__})")
    return pipeline


class _Choice(BaseModel):
    """The keys that say which pipeline a file is for; every other key is read later."""

    model_config = ConfigDict(extra="ignore")
    pipeline: str | None = None
    task: str | None = None


def choose_pipeline(pipeline: str | None, task: str | None) -> Pipeline:
    """``pipeline`` by name, else the pipeline ``task`` names, else the default."""
    if task is not None:
        from prefalign.tasks import get_task

        named = get_task(task).pipeline
        if named is None:
            raise ConfigError(f"task '{task}' has no pipeline; pipelines: "
                              f"{', '.join(sorted(PIPELINES) or [DEFAULT_PIPELINE])}")
        if pipeline is not None and pipeline != named:
            raise ConfigError(f"pipeline '{pipeline}' is not the pipeline of task '{task}' "
                              f"('{named}')")
        pipeline = named
    return get_pipeline(pipeline or DEFAULT_PIPELINE)


def load_pipeline_config(path: str | Path | None = None,
                         overrides: list[str] | None = None) -> PipelineConfig:
    """The config of the pipeline a file (with overrides) is for, validated by that
    pipeline's config class (a MiniGrid config checks its environment ids there)."""
    choice = load_config(_Choice, path, overrides)
    return load_config(choose_pipeline(choice.pipeline, choice.task).config, path, overrides)
