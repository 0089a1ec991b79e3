"""prefalign sweep: expansion, references, config errors, and real tiny-model sweeps
(results against the cells' own eval.json, skipping done cells, resuming a killed one,
a failing cell)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from prefalign.cli import main
from prefalign.intervals import t_interval, t_quantile_975
from prefalign.sweep import job_state, load_sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = "builtin:arithmetic?n=40&seed=0"
T_975_DF1 = 12.706204736174705  # Student t, 0.975 quantile, 1 degree of freedom


def run_cli(*args: str) -> int:
    """Run the command line in this process; its exit code (output: capfd)."""
    saved = sys.argv
    sys.argv = ["prefalign", *args]
    try:
        main()
        return 0
    except SystemExit as exit_info:
        return exit_info.code
    finally:
        sys.argv = saved


def write_sweep(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tiny_base(model: Path, **overrides) -> dict:
    return {"stage": "dpo", "overrides": {"model.name": str(model), "data.train": DATA,
                                          "train.max_steps": 1, "train.save_every": 0,
                                          "train.batch_size": 4, **overrides}}


# -- the sweep file ------------------------------------------------------------

def test_list_cells_named_by_their_label(tmp_path, tiny_model_dir):
    spec = {"base": tiny_base(tiny_model_dir), "seeds": [0, 1],
            "cells": {"list": [{"label": "dpo-low", "loss.beta": 0.05},
                               {"label": "ipo", "loss.name": "ipo"}]}}
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", spec))
    assert [c.id for c in sweep.cells] == ["dpo-low_s0", "dpo-low_s1", "ipo_s0", "ipo_s1"]
    assert sweep.parameters[0] == "label"
    overrides = dict(sweep.cells[2].overrides)
    assert overrides["loss.name"] == "ipo" and "label" not in overrides

def test_grid_times_seeds_in_order_with_stable_distinct_ids(tmp_path, tiny_model_dir):
    grid = {"loss.name": ["dpo", "ipo"], "loss.beta": [0.1, 0.5, 1]}
    spec = {"output_dir": str(tmp_path / "out"), "base": tiny_base(tiny_model_dir),
            "cells": {"grid": grid}, "seeds": [0, 1, 2]}
    sweep = load_sweep(write_sweep(tmp_path / "grid.yaml", spec))
    expected = [({"loss.name": n, "loss.beta": b}, s) for n, b in
                itertools.product(grid["loss.name"], grid["loss.beta"]) for s in (0, 1, 2)]
    assert [(c.values, c.seed) for c in sweep.cells] == expected
    assert [c.index for c in sweep.cells] == list(range(18))
    assert len({c.id for c in sweep.cells}) == 18
    first = dict(sweep.cells[0].overrides)
    assert (first["loss.name"], first["loss.beta"], first["train.seed"]) == ("dpo", "0.1", "0")
    assert sweep.root == tmp_path / "out" / "grid"
    assert sweep.parameters == ["loss.name", "loss.beta"]

    # reordered and extended values: every earlier cell keeps its id (and directory)
    extended = {"loss.name": ["ipo", "dpo"], "loss.beta": [2, 1, 0.5, 0.1]}
    later = load_sweep(write_sweep(tmp_path / "grid.yaml",
                                   {**spec, "cells": {"grid": extended}}))
    ids = {(c.values["loss.name"], c.values["loss.beta"], c.seed): c.id for c in later.cells}
    assert len(set(ids.values())) == 24
    for cell in sweep.cells:
        assert ids[(cell.values["loss.name"], cell.values["loss.beta"], cell.seed)] == cell.id


def test_ids_stay_distinct_when_values_differ_only_in_punctuation(tmp_path, tiny_model_dir):
    spec = {"base": tiny_base(tiny_model_dir),
            "cells": {"list": [{"data.train": "a/b.jsonl"}, {"data.train": "a:b.jsonl"}]}}
    cells = load_sweep(write_sweep(tmp_path / "s.yaml", spec)).cells
    assert len({c.id for c in cells}) == 2
    assert all(c.id.startswith("data.train-a-b.jsonl") for c in cells)


def test_shared_references_resolve_to_final_models(tmp_path, tiny_model_dir):
    sft = {"stage": "sft", "overrides": {"model.name": str(tiny_model_dir), "data.train": DATA}}
    spec = {"output_dir": str(tmp_path), "name": "refs",
            "shared": {"sft": sft,
                       "sft2": {**sft, "overrides": {**sft["overrides"],
                                                     "model.name": "${shared.sft}"}}},
            "base": tiny_base("${shared.sft}"),
            "cells": {"list": [{}, {"model.name": "${shared.sft2}", "loss.beta": 0.2}]}}
    sweep = load_sweep(write_sweep(tmp_path / "refs.yaml", spec))
    final = {name: str(tmp_path / "refs" / "shared" / name / "final") for name in ("sft", "sft2")}
    assert [j.id for j in sweep.shared] == ["sft", "sft2"]
    assert dict(sweep.shared[1].overrides)["model.name"] == final["sft"]
    assert sweep.shared[1].needs == ("sft",)
    assert dict(sweep.cells[0].overrides)["model.name"] == final["sft"]
    assert dict(sweep.cells[1].overrides)["model.name"] == final["sft2"]
    assert sweep.cells[1].needs == ("sft", "sft2")
    assert sweep.cells[1].values == {"model.name": "${shared.sft2}", "loss.beta": 0.2}


BAD = {
    "unknown stage": ({"base": {"stage": "dpoo"}}, "base.stage", "unknown stage 'dpoo'"),
    "grid value not a list": ({"cells": {"grid": {"loss.beta": 0.1}}}, "cells.grid.loss.beta",
                              "list"),
    "missing config file": ({"base": {"stage": "dpo", "config": "no/such.yaml"}},
                            "base.config", "no/such.yaml"),
    "unknown shared reference": ({"cells": {"list": [{"model.name": "${shared.sft}"}]}},
                                 "cells.list[0].model.name", "${shared.sft}"),
    "reference to a later shared run": (
        {"shared": {"a": {"stage": "sft", "overrides": {"data.train": DATA,
                                                        "model.name": "${shared.b}"}},
                    "b": {"stage": "sft", "overrides": {"data.train": DATA}}}},
        "shared.a.overrides.model.name", "${shared.b}"),
    "misspelt config key": ({"cells": {"grid": {"train.bach_size": [2]}}}, "cells.grid",
                            "did you mean 'batch_size'"),
    "name set by the sweep": ({"cells": {"grid": {"name": ["x"]}}}, "cells.grid.name",
                              "set by the sweep"),
    "train.seed next to seeds": ({"seeds": [0], "cells": {"grid": {"train.seed": [1]}}},
                                 "cells.grid.train.seed", "seeds"),
    "unknown top-level key": ({"metricz": []}, "metricz", "did you mean 'metrics'"),
    "label not a plain name": ({"cells": {"list": [{"label": "a b", "loss.beta": 0.2}]}},
                               "cells.list[0].label", "letters"),
    "metric range upside down": ({"metrics": [{"key": "loss", "range": [1, 0]}]},
                                 "metrics[0].range", "low < high"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_config_errors_are_one_line_naming_file_and_key(case, tmp_path, capfd, tiny_model_dir):
    change, key, fragment = BAD[case]
    spec = {"output_dir": str(tmp_path / "out"), "base": tiny_base(tiny_model_dir), **change}
    path = write_sweep(tmp_path / "bad.yaml", spec)
    code = run_cli("sweep", str(path))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: {key}") and fragment in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_quick_experiment_dry_run(monkeypatch, capfd):
    monkeypatch.chdir(ROOT)
    assert run_cli("sweep", "configs/experiments/quick.yaml", "--dry-run") == 0
    lines = capfd.readouterr().out.splitlines()
    cells = [line for line in lines if line.startswith("cell ")]
    assert len(cells) == 8
    assert all(" prefalign dpo " in c and " --config configs/dpo-arithmetic.yaml " in c
               for c in cells)
    sweep = load_sweep("configs/experiments/quick.yaml")
    assert {(c.values["loss.name"], c.values["loss.beta"], c.seed) for c in sweep.cells} == \
        set(itertools.product(["dpo", "ipo"], [0.1, 0.5], [0, 1]))


def test_t_quantiles_match_the_t_distribution():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30

    def exact(df: int) -> float:
        def upper_tail(t):  # P(T > t) = I_{df/(df+t²)}(df/2, 1/2) / 2
            return mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True) / 2
        return float(mpmath.findroot(lambda t: upper_tail(t) - 0.025, 2.5))

    for df in [1, 2, 3, 5, 10, 29, 30, 31, 45, 120, 1000]:
        assert t_quantile_975(df) == pytest.approx(exact(df), abs=2e-6), df
    values = [1.0, 2.0, 4.0]
    mean, s = 7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    half = exact(2) * s / math.sqrt(3)
    assert t_interval(values) == pytest.approx((mean - half, mean + half), rel=1e-6)
    assert t_interval([3.0]) is None


# -- real sweeps on the tiny model ---------------------------------------------

@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tiny_model_dir):
    """A shared SFT and a 2 β × 2 seed DPO sweep from it, run through the command line."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec = {"name": "tiny", "output_dir": str(tmp / "out"),
            "shared": {"sft": {"stage": "sft", "overrides": {
                "model.name": str(tiny_model_dir), "data.train": DATA,
                "train.max_steps": 1, "train.save_every": 0}}},
            "base": tiny_base("${shared.sft}", **{"train.max_steps": 2,
                                                  "train.save_every": 1}),
            "cells": {"grid": {"loss.beta": [0.1, 0.5]}},
            "seeds": [0, 1],
            "metrics": [{"key": "rewards/accuracy", "range": [0, 1]},
                        {"key": "loss", "label": "held-out loss"},
                        "reference/forward_passes"]}
    path = write_sweep(tmp / "tiny.yaml", spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFALIGN_CACHE", str(tmp / "cache"))
        code = run_cli("sweep", str(path), "--max-parallel", "2")
        yield load_sweep(path), code


def _eval(sweep, cell) -> dict:
    return json.loads((sweep.root / "cells" / cell.id / "eval.json").read_text())


def _record_times(sweep) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep.root.glob("*/*/cell.json")}


def test_results_are_mean_and_t_interval_of_the_cells(finished_sweep):
    sweep, code = finished_sweep
    assert code == 0
    assert all(job_state(sweep, job) == "done" for job in sweep.shared + sweep.cells)
    results = json.loads((sweep.root / "results.json").read_text())
    markdown = (sweep.root / "results.md").read_text()
    assert "| loss.beta | rewards/accuracy | held-out loss | reference/forward_passes |" \
        in markdown
    for beta, group in zip([0.1, 0.5], results["groups"]):
        assert group["values"] == {"loss.beta": beta}
        cells = [c for c in sweep.cells if c.values["loss.beta"] == beta]
        row = [str(beta)]
        for key in ("rewards/accuracy", "loss"):
            values = [_eval(sweep, c)[key] for c in cells]
            mean = (values[0] + values[1]) / 2
            half = T_975_DF1 * abs(values[0] - values[1]) / 2  # s = |a − b|/√2, n = 2
            low, high = mean - half, mean + half
            if key == "rewards/accuracy":  # a rate: the interval stays inside [0, 1]
                low, high = max(low, 0.0), min(high, 1.0)
            stat = group["metrics"][key]
            assert stat["mean"] == pytest.approx(mean, abs=1e-12)
            assert stat["low"] == pytest.approx(low, rel=1e-6, abs=1e-12)
            assert stat["high"] == pytest.approx(high, rel=1e-6, abs=1e-12)
            row.append(f"{mean:.4g} [{low:.4g}, {high:.4g}]")
        assert "| " + " | ".join(row) + " |" in markdown
        # not in eval.json: the last metrics.jsonl row that has it
        rows = [json.loads(line) for c in cells for line in
                (sweep.root / "cells" / c.id / "metrics.jsonl").read_text().splitlines()]
        logged = [r["reference/forward_passes"] for r in rows if "reference/forward_passes" in r]
        assert group["metrics"]["reference/forward_passes"]["values"] == logged
    record = json.loads((sweep.root / "cells" / sweep.cells[0].id / "cell.json").read_text())
    assert record["exit_code"] == 0 and record["seconds"] > 0
    assert record["command"][1:4] == ["-m", "prefalign", "dpo"]
    assert f"model.name={sweep.root / 'shared' / 'sft' / 'final'}" in record["command"]
    assert (sweep.root / "figures" / "loss.beta.png").stat().st_size > 0
    assert "<table>" in (sweep.root / "results.html").read_text()


def test_rerun_skips_every_finished_cell(finished_sweep, capfd):
    sweep, _ = finished_sweep
    before = _record_times(sweep)
    assert len(before) == 5
    assert run_cli("sweep", str(sweep.path)) == 0
    assert "ran 0, skipped 5" in capfd.readouterr().out
    assert _record_times(sweep) == before


def test_changed_settings_stop_the_sweep_before_anything_runs(finished_sweep, capfd):
    sweep, _ = finished_sweep
    spec = yaml.safe_load(sweep.path.read_text())
    spec["base"]["overrides"]["train.batch_size"] = 2
    changed = write_sweep(sweep.path.with_name("changed.yaml"), {**spec, "name": "tiny"})
    before = _record_times(sweep)
    assert run_cli("sweep", str(changed)) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {changed}: 4 finished run(s) used "
                                               f"other settings"), err
    assert _record_times(sweep) == before


def test_killed_cell_resumes_from_its_checkpoint_alone(finished_sweep, capfd, monkeypatch):
    sweep, _ = finished_sweep
    monkeypatch.setenv("PREFALIGN_CACHE", str(sweep.root.parent.parent / "cache"))
    killed = sweep.cells[3]
    run_dir = sweep.root / "cells" / killed.id
    finished_eval = _eval(sweep, killed)
    # a process killed after its step-1 checkpoint: no step 2, no final, no records
    for name in ("cell.json", "eval.json"):
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "final")
    shutil.rmtree(run_dir / "checkpoints" / "step-2")
    assert job_state(sweep, killed) == "resume"
    before = _record_times(sweep)
    assert run_cli("sweep", str(sweep.path)) == 0
    assert "ran 1, skipped 4" in capfd.readouterr().out
    after = _record_times(sweep)
    assert {k for k in after if after[k] != before.get(k)} == {killed.id}
    record = json.loads((run_dir / "cell.json").read_text())
    assert record["resumed"] and record["command"][3:5] == ["dpo", "--resume"]
    last_attempt = (run_dir / "cell.log").read_text().rsplit("\n# ", 1)[-1]
    assert "step 2/2" in last_attempt and "step 1/2" not in last_attempt
    resumed_eval = _eval(sweep, killed)
    for key, value in finished_eval.items():
        assert resumed_eval[key] == pytest.approx(value, abs=1e-5), key


def test_failing_cell_is_reported_and_the_others_finish(tmp_path, capfd, monkeypatch,
                                                        tiny_model_dir):
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))
    missing = tmp_path / "missing.jsonl"
    spec = {"name": "fails", "output_dir": str(tmp_path / "out"),
            "base": tiny_base(tiny_model_dir),
            "cells": {"list": [{"data.train": str(missing)}, {"loss.beta": 0.2}]}}
    path = write_sweep(tmp_path / "fails.yaml", spec)
    assert run_cli("sweep", str(path)) == 1
    out = capfd.readouterr()
    sweep = load_sweep(path)
    bad, good = sweep.cells
    assert job_state(sweep, good) == "done" and job_state(sweep, bad) != "done"
    failed = [line for line in out.err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {bad.id}: exit 2: error: ")
    assert "missing.jsonl" in failed[0]
    results = json.loads((sweep.root / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["failed", "done"]
    assert f"- {bad.id}: exit 2: error: " in (sweep.root / "results.md").read_text()
