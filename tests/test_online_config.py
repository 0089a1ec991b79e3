"""Bad input to the online stages fails with one clear error, before any model is loaded."""

from __future__ import annotations

import json
import sys

import pytest

from prefalign.cli import main
from prefalign.config import OnlineConfig, load_config
from prefalign.errors import ConfigError, DataError
from prefalign.stages import lifecycle
from prefalign.stages.online import load_online_config
from prefalign.stages.online import run as online_run


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if anything tries to load the policy."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(lifecycle, "load_policy", refuse)


@pytest.fixture
def countdown_file(tmp_path):
    rows = [{"prompt": f"Make {t} from 1 2 3", "numbers": [1, 2, 3], "target": t}
            for t in range(2, 12)]
    path = tmp_path / "countdown.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def overrides(data: str, tmp_path, *more: str) -> list[str]:
    return [f"data.train={data}", f"output_dir={tmp_path / 'runs'}", "model.name=tiny",
            "rollout.prompts_per_rollout=2", "rollout.num_samples=2", "train.batch_size=2",
            "train.grad_accum=2", *more]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "online-dpo"])
def test_group_of_one_is_refused(algorithm, tmp_path, countdown_file):
    with pytest.raises(ConfigError, match="num_samples must be at least 2"):
        load_online_config(algorithm, None, overrides(str(countdown_file), tmp_path,
                                                      "rollout.num_samples=1",
                                                      "rewards=[{name: countdown}]"))


def test_ppo_accepts_one_sample_and_minibatches_must_fit(tmp_path, countdown_file):
    base = overrides(str(countdown_file), tmp_path, "rewards=[{name: countdown}]")
    cfg = load_online_config("ppo", None, base + ["rollout.num_samples=1", "train.grad_accum=1"])
    assert cfg.updates_per_rollout == 1
    with pytest.raises(ConfigError, match="minibatches"):
        load_online_config("grpo", None, base + ["train.grad_accum=3"])
    with pytest.raises(ConfigError, match="multiple of rollout.num_samples"):
        load_online_config("grpo", None, base + ["rollout.num_samples=4", "train.batch_size=6",
                                                 "train.grad_accum=1",
                                                 "rollout.prompts_per_rollout=3"])
    with pytest.raises(ConfigError, match="online_dpo.iterations"):
        load_online_config("online-dpo", None, base + ["train.max_steps=5"])
    with pytest.raises(ConfigError, match="missing required config key 'rewards'"):
        load_config(OnlineConfig, None, [f"data.train={countdown_file}"])


def test_config_naming_another_algorithm_is_refused(tmp_path, countdown_file):
    path = tmp_path / "ppo.yaml"
    path.write_text(f"algorithm: ppo\ndata:\n  train: {countdown_file}\n"
                    f"rewards:\n  - name: countdown\n")
    with pytest.raises(ConfigError, match="prefalign ppo"):
        load_online_config("grpo", path, [])


def test_unknown_reward_fails_before_loading_a_model(tmp_path, countdown_file,
                                                      no_model_loading):
    cfg = load_online_config("grpo", None, overrides(str(countdown_file), tmp_path,
                                                     "rewards=[{name: countdwn}]"))
    with pytest.raises(ConfigError, match="unknown reward 'countdwn'.*countdown"):
        online_run.run_online(cfg)
    assert not (tmp_path / "runs").exists()


def test_missing_verifier_field_fails_before_loading_a_model(tmp_path, no_model_loading):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "Make 6", "numbers": [1, 2, 3]}) + "\n")
    cfg = load_online_config("grpo", None, overrides(str(path), tmp_path, "data.eval_fraction=0",
                                                     "rewards=[{name: countdown}]"))
    with pytest.raises(DataError) as info:
        online_run.run_online(cfg)
    assert info.value.field == "target" and str(path) in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_judge_fields_are_checked_too(tmp_path, countdown_file, no_model_loading):
    cfg = load_online_config("grpo", None, overrides(
        str(countdown_file), tmp_path, "data.eval_fraction=0.3", "rewards=[{name: countdown}]",
        "eval.judge=[{name: gsm8k}]"))
    with pytest.raises(DataError, match="'answer'"):
        online_run.run_online(cfg)


def test_cli_prints_one_line_and_exits_2(tmp_path, countdown_file, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prefalign", "grpo", *overrides(
        str(countdown_file), tmp_path, "rollout.num_samples=1", "rewards=[{name: countdown}]")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "num_samples" in err and "\n" not in err


def test_min_new_tokens_reaches_the_sampler_and_may_not_exceed_the_maximum(tmp_path,
                                                                          countdown_file):
    from prefalign.stages.online.setup import sampling_settings

    base = overrides(str(countdown_file), tmp_path, "rewards=[{name: countdown}]")
    cfg = load_online_config("grpo", None, base + ["rollout.max_new_tokens=16",
                                                   "rollout.min_new_tokens=16"])
    assert sampling_settings(cfg).min_new_tokens == 16
    with pytest.raises(ConfigError, match=r"min_new_tokens \(17\) exceeds max_new_tokens"):
        load_online_config("grpo", None, base + ["rollout.max_new_tokens=16",
                                                 "rollout.min_new_tokens=17"])
