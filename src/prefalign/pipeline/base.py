"""What a pipeline is: named stages that hand named outputs to one another.

A ``Pipeline`` declares, in the order they run, its ``Stage``s — the config
sections each reads (its fingerprint), the ``Artifact``s it needs (a function of
the config: an evaluation may need the reward model only for best-of-n) and
makes, the folders and files it owns in the run directory, and the function
that runs it — plus its config class (a ``PipelineConfig`` subclass whose
``STAGE_ORDER`` names the same stages and whose validators check everything
that can be checked before a stage runs). The runner (``runner.py``) does the rest:
planning, resume, ``--from``, input checks, state file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.config.pipeline import PipelineConfig
from prefalign.config.sections import TrainConfig


@dataclass(frozen=True)
class Artifact:
    """One stage output: its path relative to the run directory and its producer."""

    name: str
    path: str
    stage: str
    description: str

    def location(self, root: Path) -> Path:
        return root / self.path

    def exists(self, root: Path) -> bool:
        """A file, or a non-empty folder (a saved model) at its place."""
        where = self.location(root)
        return where.is_file() or (where.is_dir() and any(where.iterdir()))


@dataclass(frozen=True)
class StageContext:
    """What a running stage gets: the pipeline config, the run directory, the outputs."""

    cfg: PipelineConfig
    root: Path
    artifacts: dict[str, Artifact] = field(default_factory=dict)

    def path(self, artifact: str) -> Path:
        return self.artifacts[artifact].location(self.root)


@dataclass(frozen=True)
class Stage:
    """A stage: the config sections it reads, the outputs it needs and makes, the folders
    and files it owns (removed before it runs again from scratch), its runner."""

    name: str
    sections: tuple[str, ...]
    requires: Callable[[PipelineConfig], list[str]]
    produces: tuple[str, ...]
    owns: tuple[str, ...]
    run: Callable[[StageContext], dict]


@dataclass(frozen=True)
class Pipeline:
    """A named pipeline: its config class, stages in order and the outputs they exchange."""

    name: str
    config: type[PipelineConfig]
    stages: tuple[Stage, ...]
    artifacts: tuple[Artifact, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if tuple(self.order) != tuple(self.config.STAGE_ORDER):
            raise ValueError(f"pipeline '{self.name}': stages {self.order} differ from its "
                             f"config's STAGE_ORDER {self.config.STAGE_ORDER}")
        producers = {a.name: a.stage for a in self.artifacts}
        for stage in self.stages:
            wrong = [a for a in stage.produces if producers.get(a) != stage.name]
            if wrong:
                raise ValueError(f"pipeline '{self.name}': stage '{stage.name}' produces "
                                 f"{wrong[0]!r}, which is not declared as its artifact")

    @property
    def order(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    def artifact(self, name: str) -> Artifact:
        return next(a for a in self.artifacts if a.name == name)

    def context(self, cfg: PipelineConfig, root: Path) -> StageContext:
        return StageContext(cfg, root, {a.name: a for a in self.artifacts})


def stage_train_config(section: TrainConfig, cfg: PipelineConfig) -> TrainConfig:
    """A stage's training settings: the pipeline's ``seed`` (and ``threads``) unless the
    section sets its own, so ``seed=N`` varies every stage's initialisation and order."""
    update = {}
    if "seed" not in section.model_fields_set:
        update["seed"] = cfg.seed
    if cfg.threads is not None and section.threads is None:
        update["threads"] = cfg.threads
    return section.model_copy(update=update) if update else section

