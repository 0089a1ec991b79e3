"""Staged pipelines: ordered stages in one run directory, resumable per stage.

A ``Pipeline`` (``base``) declares its stages (config sections, inputs, outputs,
run function) and its config class; ``PIPELINES`` (``registry``) holds them by
name, each package here registering its own (``minigrid``: data → SFT → DPO →
reward model → evaluation → report). ``load_pipeline_config`` reads a file for
the pipeline it names (``pipeline:`` or ``task:``; neither means minigrid), and
``run_pipeline`` (``runner``) runs the configured stages, skipping those
already done.
"""

from prefalign.pipeline.base import Artifact, Pipeline, Stage, StageContext
from prefalign.pipeline.registry import (
    PIPELINES,
    get_pipeline,
    load_pipeline_config,
    pipeline_of,
    register_pipeline,
)
from prefalign.pipeline.runner import (
    MissingStageOutput,
    PipelineResult,
    plan_stages,
    run_pipeline,
    stage_fingerprints,
)

__all__ = ["PIPELINES", "Artifact", "MissingStageOutput", "Pipeline", "PipelineResult", "Stage",
           "StageContext", "get_pipeline", "load_pipeline_config", "pipeline_of", "plan_stages",
           "register_pipeline", "run_pipeline", "stage_fingerprints"]
