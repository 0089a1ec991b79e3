"""The fields every staged pipeline's config shares (``prefalign pipeline CONFIG.yaml``).

A pipeline (``prefalign.pipeline``) declares its own config class, a subclass of
``PipelineConfig`` with one section per stage and ``STAGE_ORDER``, the names of
its stages in the order they run. Here: which pipeline a file is for
(``pipeline:`` or the ``task:`` whose pipeline it is; neither means
``minigrid``), the stages to run, and what every stage of a pipeline shares
(base model, dtype, prompt rendering, threads, seed, run directory).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from prefalign.config.sections import RunConfig

DEFAULT_PIPELINE = "minigrid"


class PipelineConfig(RunConfig):
    """Shared fields of a pipeline config; a pipeline's own config subclasses it."""

    STAGE_ORDER: ClassVar[tuple[str, ...]] = ()

    pipeline: str | None = Field(None, description="The pipeline this file configures "
                                 "(prefalign.pipeline.PIPELINES); absent: the pipeline of "
                                 f"'task', else {DEFAULT_PIPELINE}.")
    task: str | None = Field(None, description="A task whose pipeline this file configures "
                             "(the task's 'pipeline'); an alternative to 'pipeline'.")
    stages: list[str] = Field(default_factory=list, min_length=1,
                              description="Stages to run, a subset of the pipeline's stages "
                              "in their order; absent: every stage.")
    model: str = Field("embedded", description="The base model: 'embedded', 'tiny', a local "
                       "path or a hub id.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype of every stage.")
    use_chat_template: bool = Field(False, description="Render prompts with the chat "
                                    "template (adds the template's system prompt to every "
                                    "prompt); plain text by default.")
    threads: int | None = Field(None, gt=0, description="torch CPU threads for every stage.")
    seed: int = Field(0, description="Seed of the pipeline's own sampling (data, evaluation); "
                      "training stages use their own train.seed.")

    @model_validator(mode="before")
    @classmethod
    def _every_stage_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stages" not in data:
            return {**data, "stages": list(cls.STAGE_ORDER)}
        return data

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        order = cls.STAGE_ORDER
        for stage in value:
            if stage not in order:
                raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(order)}")
        if len(set(value)) != len(value):
            raise ValueError("a stage is listed twice")
        if value != sorted(value, key=order.index):
            raise ValueError(f"stages must keep the order {' → '.join(order)}")
        return value

    @model_validator(mode="after")
    def _name_is_a_folder(self) -> PipelineConfig:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        return self
