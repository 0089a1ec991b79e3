"""The end-to-end pipeline: data → SFT → DPO → reward model → evaluation → report.

``run_pipeline(PipelineConfig)`` runs the configured stages in one run
directory, skipping those already done (``runner.py``); ``stages.py`` says
what each stage needs and makes, and ``minigrid_data.py`` and
``evaluation.py`` are the MiniGrid data and evaluation steps.
"""

from prefalign.pipeline.runner import (
    MissingStageOutput,
    PipelineResult,
    plan_stages,
    run_pipeline,
    stage_fingerprints,
)
from prefalign.pipeline.stages import STAGES

__all__ = ["STAGES", "MissingStageOutput", "PipelineResult", "plan_stages", "run_pipeline",
           "stage_fingerprints"]
