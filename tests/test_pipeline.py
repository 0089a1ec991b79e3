"""The pipeline: config errors, stage planning and resume, missing inputs, a tiny end-to-end run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from prefalign.cli import main
from prefalign.errors import ConfigError
from prefalign.eval.minigrid import COMPACT_INSTRUCTION
from prefalign.pipeline import (
    MissingStageOutput,
    load_pipeline_config,
    plan_stages,
    run_pipeline,
    stage_fingerprints,
)
from prefalign.pipeline.minigrid import MinigridPipelineConfig
from prefalign.pipeline.minigrid.data import sample_per_environment
from prefalign.pipeline.runner import check_inputs
from prefalign.tasks.minigrid import build_prompt, generate_traces

ENVS = ["MiniGrid-DoorKey-6x6-v0", "BabyAI-GoToLocalS6N2-v0"]


def tiny_config(tmp_path: Path, model_dir: Path, **changes) -> dict:
    steps = {"max_steps": 2, "batch_size": 4, "save_every": 0}
    raw = {"name": "pipe", "output_dir": str(tmp_path / "runs"), "model": str(model_dir),
           "threads": 1,
           "data": {"environments": ENVS, "train_seeds": 6, "validation_seeds": 2,
                    "test_seeds": 3},
           "sft": {"train": dict(steps)}, "dpo": {"train": dict(steps)},
           "onpolicy": {"samples": 2},
           "rl": {"rounds": 1, "seeds_per_round": 2, "episodes_per_seed": 2,
                  "max_new_tokens": 4},
           "rm": {"train": dict(steps)},
           "eval": {"max_new_tokens": 4, "best_of_n": 2, "batch_size": 8}}
    raw.update(changes)
    return raw


def write_config(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# -- bad input -------------------------------------------------------------------------

def test_unknown_environment_is_a_config_error(tmp_path):
    path = write_config(tmp_path, {"data": {"environments": ["MiniGrid-Nope-v0"]}})
    with pytest.raises(ConfigError, match="unknown environment 'MiniGrid-Nope-v0'; supported: "
                                          "MiniGrid-DoorKey-5x5-v0"):
        load_pipeline_config(path)


def test_unknown_stage_is_a_config_error(tmp_path):
    path = write_config(tmp_path, {"stages": ["data", "sft", "ppo"]})
    with pytest.raises(ConfigError, match="unknown stage 'ppo'; stages are data, sft, onpolicy, "
                                          "dpo, rl, "
                                          "rm, eval, report"):
        load_pipeline_config(path)


def test_stages_out_of_order_are_refused():
    with pytest.raises(ConfigError, match="must keep the order"):
        load_pipeline_config(overrides=["stages=[sft,data]"])


def test_unknown_from_stage_is_a_config_error(tmp_path):
    cfg = MinigridPipelineConfig(output_dir=str(tmp_path), stages=["data", "sft"])
    with pytest.raises(ConfigError, match="--from dpo: not a stage of this pipeline"):
        plan_stages(cfg, cfg.run_dir, {}, from_stage="dpo")


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["prefalign", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("raw, expected", [
    ({"data": {"environments": ["BabyAI-Nope-v0"]}}, "unknown environment 'BabyAI-Nope-v0'"),
    ({"stages": ["data", "train"]}, "unknown stage 'train'"),
])
def test_cli_reports_bad_config_in_one_line(monkeypatch, capsys, tmp_path, raw, expected):
    code, err = run_cli(monkeypatch, capsys, "pipeline", str(write_config(tmp_path, raw)))
    assert code == 2
    assert err.startswith("error: ") and expected in err
    assert len(err.strip().splitlines()) == 1


def test_cli_reports_missing_stage_output_in_one_line(monkeypatch, capsys, tmp_path):
    path = write_config(tmp_path, {"stages": ["rm"], "output_dir": str(tmp_path / "runs")})
    code, err = run_cli(monkeypatch, capsys, "pipeline", str(path))
    assert code == 2
    assert "error: stage 'rm' needs the DPO adapter" in err
    assert len(err.strip().splitlines()) == 1


def test_missing_stage_output_names_the_stage_and_path(tmp_path):
    cfg = MinigridPipelineConfig(output_dir=str(tmp_path), stages=["dpo"])
    to_run, _ = plan_stages(cfg, cfg.run_dir, {})
    with pytest.raises(MissingStageOutput) as error:
        check_inputs(cfg, cfg.run_dir, to_run)
    message = str(error.value)
    assert "stage 'dpo' needs the SFT adapter" in message
    assert str(cfg.run_dir / "sft" / "final") in message
    assert "add 'sft' to stages" in message
    with pytest.raises(MissingStageOutput):
        run_pipeline(cfg)
    assert not (cfg.run_dir / "dpo").exists()  # nothing ran


def test_best_of_n_needs_the_reward_model(tmp_path):
    cfg = load_pipeline_config(overrides=[f"output_dir={tmp_path}", "stages=[eval]",
                                                 "eval.policies=[dpo,dpo_best_of_n]"])
    (cfg.run_dir / "dpo" / "final").mkdir(parents=True)
    (cfg.run_dir / "dpo" / "final" / "adapter_config.json").write_text("{}")
    to_run, _ = plan_stages(cfg, cfg.run_dir, {})
    with pytest.raises(MissingStageOutput, match="needs the reward model"):
        check_inputs(cfg, cfg.run_dir, to_run)
    only_base = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"policies": ["base"]})})
    check_inputs(only_base, only_base.run_dir, plan_stages(only_base, only_base.run_dir, {})[0])


# -- planning ----------------------------------------------------------------------------

def test_fingerprints_follow_the_dependencies():
    base = MinigridPipelineConfig()
    prints = stage_fingerprints(base)
    changed_eval = stage_fingerprints(load_pipeline_config(overrides=["eval.step_budget=5"]))
    assert [s for s in prints if prints[s] != changed_eval[s]] == ["eval", "report"]
    changed_dpo = stage_fingerprints(load_pipeline_config(overrides=["dpo.loss.beta=0.3"]))
    assert [s for s in prints if prints[s] != changed_dpo[s]] == ["dpo", "rm", "eval", "report"]
    changed_data = stage_fingerprints(load_pipeline_config(overrides=["data.train_seeds=9"]))
    assert [s for s in prints if prints[s] == changed_data[s]] == []
    # the base model only matters to SFT and to the base policy's evaluation
    without_base = stage_fingerprints(load_pipeline_config(overrides=[
        "eval.policies=[sft,dpo]", "model=tiny"]))
    with_base = stage_fingerprints(load_pipeline_config(overrides=[
        "eval.policies=[sft,dpo]"]))
    assert without_base["data"] == with_base["data"]
    assert without_base["sft"] != with_base["sft"]


# -- data ----------------------------------------------------------------------------------

def test_data_stage_excludes_held_out_states(tmp_path):
    from prefalign.pipeline.minigrid.config import MinigridDataConfig
    from prefalign.pipeline.minigrid.data import build_minigrid_data

    cfg = MinigridDataConfig(environments=["MiniGrid-DoorKey-5x5-v0"], train_seeds=30,
                             validation_seeds=3, test_seeds=5, max_pairs=40)
    summary = build_minigrid_data(cfg, tmp_path, seed=0)
    rows = [json.loads(line) for line in (tmp_path / "sft_train.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (tmp_path / "pairs_train.jsonl").read_text().splitlines()]
    held_out = generate_traces(cfg.environments, range(30, 38))  # validation + test seeds
    held_out_prompts = {COMPACT_INSTRUCTION + "\n" + t["context"] + "\nNext subgoal:"
                        for t in held_out}
    assert rows and pairs and len(pairs) == 40
    assert not held_out_prompts & {r["prompt"] for r in rows}
    assert not held_out_prompts & {p["prompt"] for p in pairs}
    assert all(r["prompt"].startswith(COMPACT_INSTRUCTION + "\n") for r in rows)
    # every training state not seen in a held-out episode is kept, repeats included
    train = generate_traces(cfg.environments, range(30))
    held_out_contexts = {t["context"] for t in held_out}
    kept = [t for t in train if t["context"] not in held_out_contexts]
    assert len(rows) == len(kept) < len(train)
    assert sorted(r["completion"] for r in rows) == sorted(" " + t["expert_subgoal"] for t in kept)
    # DoorKey-5x5 repeats layouts: the raw overlap of test states with training is large
    test = generate_traces(cfg.environments, range(33, 38))
    seen = {t["context"] for t in train}
    before = summary["test_state_overlap"]["before_exclusion"]["all"]
    assert before["total"] == len(test)
    assert before["shared"] == sum(t["context"] in seen for t in test) > 0
    assert summary["test_state_overlap"]["after_exclusion"]["all"]["shared"] == 0
    assert build_prompt(test[0]["context"]).endswith(test[0]["context"] + "\nNext subgoal:")


# -- a tiny end-to-end run ------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    tmp_path = tmp_path_factory.mktemp("pipeline")
    cfg = MinigridPipelineConfig.model_validate(tiny_config(tmp_path, tiny_model_dir))
    result = run_pipeline(cfg)
    return cfg, result


def test_pipeline_runs_every_stage_and_writes_the_report(finished_run):
    cfg, result = finished_run
    root = cfg.run_dir
    assert list(result.ran) == ["data", "sft", "onpolicy", "dpo", "rl", "rm", "eval", "report"]
    state = json.loads((root / "pipeline.json").read_text())["stages"]
    assert all(state[s]["status"] == "done" for s in result.ran)
    assert (root / "sft" / "final" / "adapter_config.json").is_file()
    dpo_adapter = json.loads((root / "dpo" / "final" / "adapter_config.json").read_text())
    assert Path(dpo_adapter["base_model_name_or_path"]) == (root / "sft" / "final").resolve()
    assert (root / "rm" / "final" / "reward_model.json").is_file()
    assert json.loads((root / "rl" / "rounds.json").read_text())[0]["episodes"] == 4
    assert (root / "rl" / "state.pt").is_file()
    for policy in ("base", "sft", "dpo", "dpo_best_of_n", "rl"):
        evaluation = json.loads((root / "eval" / f"{policy}.json").read_text())
        assert evaluation["overall"]["closed_loop"]["episodes"] == 2 * 3
    report = (root / "report.md").read_text()
    assert "| policy | closed-loop success |" in report
    assert "(0/6)" in report or "/6)" in report
    assert "test states seen in training" in report
    for figure in ("success_by_environment.png", "error_types.png"):
        assert (root / "figures" / figure).stat().st_size > 1000


def test_rerun_skips_finished_stages(finished_run):
    cfg, _ = finished_run
    again = run_pipeline(cfg)
    assert again.ran == {} and again.skipped == list(cfg.stages)


def test_changed_eval_config_reruns_only_eval_and_report(finished_run):
    cfg, _ = finished_run
    changed = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={
        "policies": ["sft"], "step_budget": 3})})
    result = run_pipeline(changed)
    assert list(result.ran) == ["eval", "report"]
    assert not (cfg.run_dir / "eval" / "base.json").exists()  # old results were cleared
    assert json.loads((cfg.run_dir / "eval" / "sft.json").read_text())["step_budget"] == 3


def test_from_stage_forces_that_stage_and_later_ones(finished_run):
    cfg, _ = finished_run
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"policies": ["dpo"]})})
    run_pipeline(cfg)
    before = (cfg.run_dir / "rm" / "final" / "reward_model.json").stat().st_mtime_ns
    result = run_pipeline(cfg, from_stage="rm")
    assert list(result.ran) == ["rm", "eval", "report"]
    assert all(reason.startswith("forced") for reason in result.ran.values())
    assert (cfg.run_dir / "rm" / "final" / "reward_model.json").stat().st_mtime_ns != before


def test_interrupted_stage_continues_and_removed_output_is_rebuilt(finished_run):
    cfg, _ = finished_run
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"policies": ["dpo"]})})
    run_pipeline(cfg)
    state_path = cfg.run_dir / "pipeline.json"
    state = json.loads(state_path.read_text())
    state["stages"]["eval"]["status"] = "running"
    state_path.write_text(json.dumps(state))
    (cfg.run_dir / "report.md").unlink()
    to_run, skipped = plan_stages(cfg, cfg.run_dir, state["stages"])
    assert to_run == {"eval": "continuing after an interruption",
                      "report": "its input is being recomputed"}
    assert skipped == ["data", "sft", "onpolicy", "dpo", "rl", "rm"]
    result = run_pipeline(cfg)
    assert list(result.ran) == ["eval", "report"]
    assert (cfg.run_dir / "report.md").is_file()


def test_per_environment_pair_sampling_gives_equal_shares_smallest_first():
    sizes = {"small": 5, "big-a": 100, "big-b": 100}
    records = [{"id": (env, i), "metadata": {"env_id": env}}
               for i in range(100) for env, size in sizes.items() if i < size]
    kept = sample_per_environment(records, 65, seed=3)
    counts = {env: sum(r["metadata"]["env_id"] == env for r in kept) for env in sizes}
    assert counts == {"small": 5, "big-a": 30, "big-b": 30}
    positions = [records.index(r) for r in kept]
    assert positions == sorted(positions)
    assert kept == sample_per_environment(records, 65, seed=3)
    assert kept != sample_per_environment(records, 65, seed=4)
    odd = sample_per_environment(records, 64, seed=0)
    assert len(odd) == 64 and sum(r["metadata"]["env_id"] == "small" for r in odd) == 5
    assert sample_per_environment(records, 500, seed=0) == records
    assert sample_per_environment(records, None, seed=0) == records


# -- which pipeline a file is for; a pipeline declared in this file ---------------------------

def test_shipped_configs_are_minigrid_configs_without_a_pipeline_key():
    for name in ("minigrid.yaml", "minigrid-quick.yaml"):
        path = Path(__file__).resolve().parents[1] / "configs" / name
        assert "pipeline" not in yaml.safe_load(path.read_text())
        cfg = load_pipeline_config(path)
        assert isinstance(cfg, MinigridPipelineConfig) and cfg.pipeline == "minigrid"


@pytest.mark.parametrize("override, expected", [
    ("pipeline=nope", "unknown pipeline 'nope'; pipelines: "),
    ("task=arithmetic", "task 'arithmetic' has no pipeline"),
    ("task=nope", "unknown task 'nope'"),
])
def test_a_file_for_no_pipeline_is_a_config_error(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_pipeline_config(overrides=[override])


def test_a_task_names_its_pipeline():
    from prefalign.pipeline import PIPELINES, get_pipeline
    from prefalign.tasks import TASKS, task_names

    assert isinstance(load_pipeline_config(overrides=["task=minigrid"]), MinigridPipelineConfig)
    named = {TASKS[name].pipeline for name in task_names()} - {None}
    assert named and all(get_pipeline(name).name == name for name in named)
    assert named <= set(PIPELINES)


def _toy_pipeline():
    """Two stages: 'make' writes ``count`` lines, 'total' counts them."""
    from typing import ClassVar

    from pydantic import Field

    from prefalign.config import StrictModel
    from prefalign.config.pipeline import PipelineConfig
    from prefalign.pipeline import Artifact, Pipeline, Stage, register_pipeline

    class MakeSection(StrictModel):
        count: int = Field(3, gt=0)

    class ToyConfig(PipelineConfig):
        STAGE_ORDER: ClassVar[tuple[str, ...]] = ("make", "total")
        make: MakeSection = Field(default_factory=MakeSection)

    def make(ctx):
        ctx.path("lines").parent.mkdir(parents=True, exist_ok=True)
        ctx.path("lines").write_text("x\n" * ctx.cfg.make.count)
        return {"lines": ctx.cfg.make.count}

    def total(ctx):
        ctx.path("total").write_text(str(len(ctx.path("lines").read_text().splitlines())))
        return {}

    return register_pipeline(Pipeline(
        name="toy_lines", config=ToyConfig,
        stages=(Stage("make", ("make",), lambda cfg: [], ("lines",), ("make",), make),
                Stage("total", (), lambda cfg: ["lines"], ("total",), ("total.txt",), total)),
        artifacts=(Artifact("lines", "make/lines.txt", "make", "the lines"),
                   Artifact("total", "total.txt", "total", "the count"))))


def test_a_pipeline_declared_outside_the_package_runs_and_resumes(tmp_path):
    _toy_pipeline()
    path = write_config(tmp_path, {"pipeline": "toy_lines", "name": "toy",
                                   "output_dir": str(tmp_path / "runs"), "make": {"count": 4}})
    cfg = load_pipeline_config(path)
    assert list(run_pipeline(cfg).ran) == ["make", "total"]
    assert (cfg.run_dir / "total.txt").read_text() == "4"
    assert run_pipeline(cfg).skipped == ["make", "total"]
    changed = load_pipeline_config(path, ["make.count=2"])
    assert list(run_pipeline(changed).ran) == ["make", "total"]
    assert (cfg.run_dir / "total.txt").read_text() == "2"
    assert list(run_pipeline(changed, from_stage="total").ran) == ["total"]
    with pytest.raises(ConfigError, match="unknown stage 'dpo'; stages are make, total"):
        load_pipeline_config(path, ["stages=[make,dpo]"])


def test_the_pipeline_seed_reaches_every_training_stage_unless_a_section_sets_its_own(tmp_path):
    from prefalign.pipeline.minigrid.stages import dpo_config, rm_config, sft_config
    from prefalign.pipeline.registry import get_pipeline

    cfg = load_pipeline_config(overrides=[f"output_dir={tmp_path}", "seed=3",
                                          "dpo.train.seed=7"])
    ctx = get_pipeline("minigrid").context(cfg, cfg.run_dir)
    assert sft_config(ctx).train.seed == 3
    assert rm_config(ctx).train.seed == 3
    assert dpo_config(ctx).train.seed == 7
