"""Run the stages of a pipeline config in one run directory, resuming at stage level.

The pipeline is the one the config belongs to (``registry.pipeline_of``); nothing
here knows what its stages do.

``runs/<name>/pipeline.json`` records each stage's status (``running`` or
``done``), the fingerprint of the config it ran with, its time and a short
summary. On a re-run a stage is skipped when it is done, its fingerprint is
unchanged and its outputs are in place; otherwise it runs, and so does every
later stage that reads its outputs. A fingerprint hashes the config sections
the stage reads plus the fingerprints of the stages it reads from, so a change
upstream reaches everything downstream. A stage that was interrupted continues
(training stages from their last checkpoint); a stage that runs again from
scratch first loses its old outputs. ``from_stage`` forces that stage and all
later ones to run from scratch.

Before anything runs, every input of every stage to run must either come from
an earlier stage of this run or already exist in the run directory; otherwise
``MissingStageOutput`` names the stage, the input and where it was looked for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.config.pipeline import PipelineConfig
from prefalign.engine.rundir import RunDir, atomic_write_json
from prefalign.errors import ConfigError, PrefalignError
from prefalign.log import say
from prefalign.pipeline.base import Pipeline
from prefalign.pipeline.registry import pipeline_of

STATE_FILE = "pipeline.json"
CONTINUE = "continuing after an interruption"


class MissingStageOutput(PrefalignError):
    """A stage's input is neither produced earlier in this run nor in the run directory."""


@dataclass
class PipelineResult:
    """Where the run lives, which stages ran (with their reasons) and which were skipped."""

    root: Path
    ran: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def stage_fingerprints(cfg: PipelineConfig) -> dict[str, str]:
    """Per stage: sha256 of the config sections it reads and its producers' fingerprints."""
    pipeline = pipeline_of(cfg)
    dump = cfg.model_dump(mode="json")
    prints: dict[str, str] = {}
    for stage in pipeline.stages:
        name = stage.name
        producers = sorted({pipeline.artifact(a).stage for a in stage.requires(cfg)})
        payload = {"sections": {key: dump[key] for key in stage.sections},
                   "upstream": {p: prints[p] for p in producers}}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        prints[name] = digest[:16]
    return prints


def read_state(root: Path) -> dict[str, dict]:
    path = root / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("stages", {})
    except json.JSONDecodeError as err:
        raise PrefalignError(f"unreadable {path}: {err}; delete it to start the run "
                             f"again") from None


def _write_state(root: Path, state: dict[str, dict]) -> None:
    atomic_write_json(root / STATE_FILE, {"stages": state})


def plan_stages(cfg: PipelineConfig, root: Path, state: dict[str, dict],
                from_stage: str | None = None) -> tuple[dict[str, str], list[str]]:
    """``({stage: reason to run}, [stages skipped])`` in pipeline order."""
    pipeline = pipeline_of(cfg)
    order = pipeline.order
    if from_stage is not None and from_stage not in cfg.stages:
        known = f"; stages are {', '.join(order)}" if from_stage not in order else ""
        raise ConfigError(f"--from {from_stage}: not a stage of this pipeline (its stages: "
                          f"{', '.join(cfg.stages)}){known}")
    prints = stage_fingerprints(cfg)
    to_run: dict[str, str] = {}
    skipped: list[str] = []
    for name in cfg.stages:
        stage, record = pipeline.stage(name), state.get(name)
        if from_stage is not None and order.index(name) >= order.index(from_stage):
            reason = f"forced (--from {from_stage})"
        elif record is None:
            reason = "not run yet"
        elif record.get("fingerprint") != prints[name]:
            reason = "its config or an upstream stage changed"
        elif any(pipeline.artifact(a).stage in to_run for a in stage.requires(cfg)):
            reason = "its input is being recomputed"
        elif record.get("status") != "done":
            reason = CONTINUE
        elif not all(pipeline.artifact(a).exists(root) for a in stage.produces):
            reason = "its output is missing"
        else:
            skipped.append(name)
            continue
        to_run[name] = reason
    return to_run, skipped


def check_inputs(cfg: PipelineConfig, root: Path, to_run: dict[str, str]) -> None:
    """Raise ``MissingStageOutput`` for the first input no stage will provide."""
    pipeline = pipeline_of(cfg)
    produced: set[str] = set()
    for name in to_run:
        for artifact_name in pipeline.stage(name).requires(cfg):
            artifact = pipeline.artifact(artifact_name)
            if artifact_name in produced or artifact.exists(root):
                continue
            raise MissingStageOutput(
                f"stage '{name}' needs {artifact.description} ({artifact.location(root)}), "
                f"the output of stage '{artifact.stage}', which is missing: add "
                f"'{artifact.stage}' to stages, or run it first in this run directory")
        produced.update(pipeline.stage(name).produces)


def _clear_outputs(root: Path, owned: tuple[str, ...]) -> None:
    for relative in owned:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _run_stage(pipeline: Pipeline, name: str, cfg: PipelineConfig, root: Path) -> dict:
    """Run one stage; its summary. ``MissingStageOutput`` if an output is not in place."""
    stage = pipeline.stage(name)
    summary = stage.run(pipeline.context(cfg, root))
    missing = [pipeline.artifact(a) for a in stage.produces
               if not pipeline.artifact(a).exists(root)]
    if missing:
        raise MissingStageOutput(f"stage '{name}' finished without writing "
                                 f"{missing[0].location(root)}")
    return summary


def run_pipeline(cfg: PipelineConfig, from_stage: str | None = None) -> PipelineResult:
    """Run the pipeline in ``cfg.run_dir`` (see the module docstring)."""
    pipeline = pipeline_of(cfg)
    root = cfg.run_dir
    state = read_state(root)
    to_run, skipped = plan_stages(cfg, root, state, from_stage)
    check_inputs(cfg, root, to_run)
    RunDir(root).create().write_config(cfg)
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    result = PipelineResult(root=root, ran=dict(to_run), skipped=skipped)
    prints = stage_fingerprints(cfg)
    for name in skipped:
        say("pipeline", f"{name}: done earlier, skipped ({state[name].get('seconds', 0):.0f}s "
                        f"then)")
    total = len(to_run)
    for number, (name, reason) in enumerate(to_run.items(), start=1):
        say("pipeline", f"stage {number}/{total} {name}: {reason}")
        if reason != CONTINUE:
            _clear_outputs(root, pipeline.stage(name).owns)
        state[name] = {"status": "running", "fingerprint": prints[name]}
        _write_state(root, state)
        started = time.perf_counter()
        summary = _run_stage(pipeline, name, cfg, root)
        seconds = round(time.perf_counter() - started, 1)
        state[name] = {"status": "done", "fingerprint": prints[name], "seconds": seconds,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "summary": summary}
        _write_state(root, state)
        result.seconds[name] = seconds
        say("pipeline", f"stage {number}/{total} {name}: done in {seconds:.0f}s")
    return result
