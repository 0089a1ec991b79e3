"""Reward-hacking signals: length z-score, KL drift, ensemble disagreement."""

from __future__ import annotations

import json
import math
import random

import pytest

from prefalign.eval.hacking import HackingMonitor


def rollout_stats(lengths: list[float]) -> tuple[float, float, int]:
    mean = sum(lengths) / len(lengths)
    std = math.sqrt(sum((x - mean) ** 2 for x in lengths) / len(lengths))
    return mean, std, len(lengths)


def synthetic_rollouts(means: list[float], seed: int = 0, size: int = 32) -> list[list[float]]:
    rng = random.Random(seed)
    return [[max(1.0, rng.gauss(m, 3.0)) for _ in range(size)] for m in means]


def feed(monitor: HackingMonitor, rollouts: list[list[float]]) -> list[dict]:
    return [monitor.observe_rollout(step, *rollout_stats(lengths))
            for step, lengths in enumerate(rollouts, start=1)]


def test_length_z_uses_the_pooled_warmup_distribution():
    rollouts = synthetic_rollouts([20, 21, 19, 20, 22, 30])
    metrics = feed(HackingMonitor(warmup=5), rollouts)
    pooled = [x for lengths in rollouts[:5] for x in lengths]
    mean = sum(pooled) / len(pooled)
    std = math.sqrt(sum((x - mean) ** 2 for x in pooled) / len(pooled))
    now = sum(rollouts[5]) / len(rollouts[5])
    assert metrics[5]["hacking/length_z"] == pytest.approx((now - mean) / std, rel=1e-9)
    assert all("hacking/length_z" not in m for m in metrics[:5])


def test_length_alert_fires_on_a_blow_up_once():
    monitor = HackingMonitor(warmup=5, length_z=2.5)
    feed(monitor, synthetic_rollouts([20] * 5 + [21, 24, 28, 33, 40, 48, 60]))
    assert [a.kind for a in monitor.alerts] == ["length"]
    alert = monitor.alerts[0]
    assert alert.value > 2.5 and alert.step > 5
    assert "length" in alert.message


def test_no_alert_on_a_stable_run():
    monitor = HackingMonitor(warmup=5, length_z=2.5)
    metrics = feed(monitor, synthetic_rollouts([20, 21, 19, 20, 21, 20, 22, 19, 21, 20, 21, 22]))
    assert monitor.alerts == []
    assert max(abs(m["hacking/length_z"]) for m in metrics[5:]) < 2.5


def test_kl_rising_over_three_consecutive_evaluations():
    monitor = HackingMonitor(kl_rising=3)
    rises = [monitor.observe_eval(step, kl)["hacking/kl_rises"]
             for step, kl in enumerate([0.1, 0.3, 0.2, 0.4, 0.5], start=1)]
    assert rises == [0, 1, 0, 1, 2] and monitor.alerts == []
    assert monitor.observe_eval(6, 0.7)["hacking/kl_rises"] == 3
    assert [a.kind for a in monitor.alerts] == ["kl_rising"] and monitor.alerts[0].step == 6
    monitor.observe_eval(7, 0.8)
    assert len(monitor.alerts) == 1  # still above: no second alert


def test_ensemble_disagreement_alert():
    monitor = HackingMonitor(warmup=3, disagreement_z=2.5)
    lengths = rollout_stats([20.0] * 8)
    for step, spread in enumerate([0.10, 0.12, 0.11, 0.11, 0.30], start=1):
        monitor.observe_rollout(step, *lengths, disagreement=spread)
    assert [a.kind for a in monitor.alerts] == ["disagreement"]
    assert monitor.alerts[0].step == 5


def test_replay_rebuilds_the_state_quietly_and_alerts_are_written(tmp_path, capsys):
    rollouts = synthetic_rollouts([20] * 5 + [30, 45])
    live = HackingMonitor(warmup=5)
    feed(live, rollouts)
    live.observe_eval(7, 0.5)
    assert "alert" in capsys.readouterr().out
    rows = [dict(zip(("length_mean", "length_std", "sequences"), rollout_stats(r)), step=i + 1)
            for i, r in enumerate(rollouts)]
    rebuilt = HackingMonitor(warmup=5)
    rebuilt.replay(rows, [(7, 0.5)])
    assert capsys.readouterr().out == ""
    assert [(a.step, a.kind) for a in rebuilt.alerts] == [(a.step, a.kind) for a in live.alerts]
    rebuilt.write(tmp_path / "alerts.json")
    saved = json.loads((tmp_path / "alerts.json").read_text())["alerts"]
    assert [a["kind"] for a in saved] == ["length"] and saved[0]["step"] == 6
