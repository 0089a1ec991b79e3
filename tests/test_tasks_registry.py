"""The task registry and its one source loader: names, typed parameters, clear errors,
and every source string the configs and the README use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from prefalign.errors import ConfigError, DataError
from prefalign.rewards import available_rewards, build_reward
from prefalign.tasks import TASKS, get_task, load_source, passes, source_task, task_names

ROOT = Path(__file__).resolve().parents[1]


def test_the_four_tasks_are_registered_with_their_kinds_and_verifiers():
    assert task_names() == sorted(TASKS) and {"arithmetic", "countdown", "gsm8k",
                                              "minigrid"} <= set(TASKS)
    assert set(get_task("arithmetic").makers) == {"sft", "preference", "prompt"}
    assert "prompt" in get_task("countdown").makers and get_task("minigrid").pipeline
    for name in ("arithmetic", "countdown", "gsm8k", "minigrid"):
        verifier = get_task(name).verifier()
        assert verifier.required_fields == build_reward(name).required_fields
        assert name in available_rewards()


def test_an_unknown_task_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"did you mean 'countdown'.*arithmetic, countdown"):
        get_task("countdwn")
    with pytest.raises(DataError, match="unknown task 'nosuch'.*valid tasks: agent, arithmetic"):
        load_source("builtin:nosuch?n=3", "prompt")


@pytest.mark.parametrize("source, message", [
    ("countdown:n=three", "parameter 'n' must be an integer, got 'three'"),
    ("countdown:size=3", "unknown parameter 'size'; valid: n, seed"),
    ("countdown:style=long", "style must be 'full' or 'short'"),
    ("countdown:numbers=5", "num_numbers must be 3 or 4"),
    ("builtin:arithmetic?verbose_share=lots", "'verbose_share' must be a number"),
    ("builtin:arithmetic?split=dev", "unknown split 'dev'"),
    ("minigrid:seeds=a-b", "seeds must be 'START-END' or 'SEED'"),
    ("gsm8k:split=test", "parameter 'path' is required"),
])
def test_bad_parameters_are_one_line_naming_the_source(source, message):
    with pytest.raises(DataError, match=re.escape(message)) as error:
        load_source(source, "preference" if "verbose_share" in source else "prompt")
    assert error.value.file == source


def test_a_task_without_records_of_a_kind_says_which_it_has():
    with pytest.raises(DataError, match="task 'minigrid' has no preference records; it has: "
                                        "prompt"):
        load_source("minigrid:seeds=0", "preference")


def test_both_spellings_of_a_task_source_give_the_same_records():
    assert load_source("builtin:countdown?n=4&seed=2", "prompt") == \
        load_source("countdown:n=4&seed=2", "prompt")
    problems, sft = (load_source("countdown:n=4&seed=2", kind) for kind in ("prompt", "sft"))
    assert [r["prompt"] for r in sft] == [r["prompt"] for r in problems]
    verifier = get_task("countdown").verifier()
    assert all(passes(verifier, s["completion"], p) for s, p in zip(sft, problems))


def _config_sources() -> list[str]:
    sources = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
        sources += [data[key] for key in ("train", "eval")
                    if isinstance(data.get(key), str) and ":" in data[key]
                    and not data[key].startswith("hf:")]
    return sources


def test_every_task_source_in_the_configs_and_the_readme_still_loads():
    sources = _config_sources()
    assert any(s.startswith("countdown:") for s in sources)
    assert any(s.startswith("builtin:arithmetic") for s in sources)
    readme = (ROOT / "README.md").read_text()
    sources += re.findall(r"`(builtin:[^`]+)`", readme)
    for source in sources:
        folder = re.search(r"path=([^&]+)", source)
        if folder and not (ROOT / folder.group(1)).exists():
            continue  # a data folder outside the repository (../shared/data), absent here
        makers = source_task(source).makers
        kind = "sft" if source_task(source).name == "arithmetic" else next(
            k for k in ("prompt", "steps", "sft") if k in makers)
        small = re.sub(r"n=\d+", "n=5", source)
        assert load_source(small, kind), source


def test_data_split_on_the_command_line_splits_a_task_source_by_content(tmp_path, monkeypatch,
                                                                        capsys):
    import json
    import sys

    from prefalign.cli import main

    source = "countdown:n=300&seed=0&numbers=3&max_number=9&max_target=20"
    monkeypatch.setattr(sys, "argv", ["prefalign", "data", "split", source, "--kind", "prompt",
                                      "--out", str(tmp_path), "--fractions",
                                      "train=0.7,val=0.3"])
    main()
    assert "val:" in capsys.readouterr().out
    parts = {name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").open()]
             for name in ("train", "val")}
    assert len(parts["train"]) + len(parts["val"]) == 300 and parts["val"]
    problems = {name: {(tuple(sorted(r["numbers"])), r["target"]) for r in rows}
                for name, rows in parts.items()}
    assert not problems["train"] & problems["val"]


def test_task_metrics_classify_completions():
    row = {"numbers": [3, 5, 7], "target": 5}
    completions = ["<answer>7 - 5 + 3</answer>", "<answer>3 - 5 + 7</answer>",
                   "<answer>3 + 3</answer>", "<answer>9</answer>", "<answer>3 +</answer>",
                   "no tags", "<answer>3 + 5</answer>", "<answer>7 + 5 - 3</answer>"]
    shares = get_task("countdown").metrics([row] * 8, completions)
    assert shares == {"outcome/correct": 1 / 8, "outcome/rules": 1 / 8,
                      "outcome/numbers": 2 / 8, "outcome/malformed": 1 / 8,
                      "outcome/no_answer": 1 / 8, "outcome/value": 2 / 8}
    records = load_source("minigrid:seeds=0", "prompt")[:2]
    grid = get_task("minigrid").metrics(records, [records[0]["expert_subgoal"], "dance()"])
    assert grid["outcome/success"] == 0.5 and grid["outcome/parse_error"] == 0.5
    assert sum(grid.values()) == 1.0
