"""A new preference loss added from this file alone: register it, configure it, train with it."""

from __future__ import annotations

from typing import Annotated

import pytest
import yaml
from pydantic import Field
from torch import Tensor

from prefalign.config import PreferenceConfig, load_config
from prefalign.errors import ConfigError
from prefalign.losses import preference as registry
from prefalign.losses.preference import PreferenceLossOutput, register_preference_loss
from prefalign.stages.preference import run_preference


def toy_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
             ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
             my_param: Annotated[float, Field(gt=0, description="toy: target margin.")] = 1.0
             ) -> PreferenceLossOutput:
    """Toy: regress the margin h = (πc − refc) − (πr − refr) to ``my_param``: (h − m)²."""
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    losses = (chosen - rejected - my_param) ** 2
    return PreferenceLossOutput(losses.mean(), losses, chosen.detach(), rejected.detach())


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(registry.PREFERENCE_LOSSES, "toy", None)  # removed again after the test
    register_preference_loss("toy", toy_loss)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "cache"))


def _overrides(tmp_path, model, data, *extra):
    return ["name=toy-run", f"output_dir={tmp_path / 'runs'}", f"model.name={model}",
            "model.lora={r: 4, alpha: 8}", f"data.train={data}", "data.eval_fraction=0.25",
            "data.max_length=48", "data.max_prompt_length=32", "train.max_steps=3",
            "train.batch_size=4", "train.save_every=0", "train.threads=1", *extra]


def test_a_loss_registered_in_a_test_file_trains_end_to_end(tmp_path, tiny_model_dir,
                                                            preference_file, toy_registered):
    cfg = load_config(PreferenceConfig, None, _overrides(
        tmp_path, tiny_model_dir, preference_file, "loss.name=toy", "loss.my_param=1.5"))
    assert cfg.loss.params() == {"my_param": 1.5}
    rows = []
    result = run_preference(cfg, on_step_end=lambda step, metrics: rows.append(metrics))
    # Step 0: the policy is its reference, h = 0, so the loss is (0 − 1.5)².
    assert rows[0]["loss"] == pytest.approx(1.5 ** 2, abs=1e-6)
    assert len(rows) == 3 and result.step == 3
    assert (cfg.run_dir / "final" / "adapter_config.json").is_file()
    saved = yaml.safe_load((cfg.run_dir / "config.yaml").read_text())
    assert saved["loss"] == {"name": "toy", "average_log_prob": False, "my_param": 1.5}


def test_a_misspelt_parameter_of_a_registered_loss_names_the_right_one(
        tmp_path, tiny_model_dir, preference_file, toy_registered):
    with pytest.raises(ConfigError, match="did you mean 'my_param'"):
        load_config(PreferenceConfig, None, _overrides(
            tmp_path, tiny_model_dir, preference_file, "loss.name=toy", "loss.my_parm=1"))
    with pytest.raises(ConfigError, match="greater than 0"):
        load_config(PreferenceConfig, None, _overrides(
            tmp_path, tiny_model_dir, preference_file, "loss.name=toy", "loss.my_param=-1"))
