"""Reward-hacking signals, computed while an online run trains.

A policy that games its reward usually shows it before a human reads a sample:

* **length blow-up** — the mean response length of a rollout against a warm-up
  baseline: ``z = (mean_now − μ_w) / max(σ_w, 1)``, where ``μ_w`` and ``σ_w``
  are the mean and standard deviation of every response length of the first
  ``warmup`` rollouts (pooled exactly from their per-rollout means, standard
  deviations and counts). An alert above ``length_z`` (2.5σ by default): the
  typical response now is longer than almost every warm-up response.
* **KL drift** — the held-out KL to the reference rising at ``kl_rising``
  consecutive evaluations (``kl_t > kl_{t−1} > … > kl_{t−k}``): the policy keeps
  moving away with no plateau.
* **ensemble disagreement** — with a reward-model ensemble, the mean standard
  deviation of the members' scores, as a z-score against its warm-up values
  (floored at 1e-3): the policy has found outputs on which the reward models
  no longer agree, the classic sign of exploiting one of them.

An alert is raised when a signal crosses its threshold (not again while it
stays above), printed, kept in ``alerts`` and written to ``alerts.json``.
The monitor's state is a function of the logged rollouts and evaluations, so a
resumed run rebuilds it with ``replay``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefalign.engine.distributed import is_main_process
from prefalign.engine.rundir import atomic_write_json


@dataclass
class Alert:
    """One crossing of a threshold: at which step, which signal, its value, why."""

    step: int
    kind: str
    value: float
    message: str


@dataclass
class _Pooled:
    """Running pooled mean and variance of samples given as (mean, std, count) groups."""

    count: int = 0
    mean: float = 0.0
    sum_squares: float = 0.0  # Σ (x − mean)² over all samples

    def add(self, mean: float, std: float, count: int) -> None:
        if count <= 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.sum_squares += std * std * count + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.sum_squares / self.count) if self.count else 0.0


@dataclass
class HackingMonitor:
    """Tracks the signals of the module docstring; feed it rollouts and evaluations."""

    warmup: int = 5
    length_z: float = 2.5
    kl_rising: int = 3
    disagreement_z: float = 2.5
    alerts: list[Alert] = field(default_factory=list)
    _rollouts: int = 0
    _lengths: _Pooled = field(default_factory=_Pooled)
    _disagreements: list[float] = field(default_factory=list)
    _eval_kl: list[float] = field(default_factory=list)
    _active: set[str] = field(default_factory=set)
    verbose: bool = True

    def _raise(self, step: int, kind: str, value: float, above: bool, message: str) -> None:
        if above and kind not in self._active:
            alert = Alert(step, kind, float(value), message)
            self.alerts.append(alert)
            if self.verbose:
                print(f"alert (step {step}): {message}")
        if above:
            self._active.add(kind)
        else:
            self._active.discard(kind)

    def observe_rollout(self, step: int, length_mean: float, length_std: float, count: int,
                        disagreement: float | None = None) -> dict[str, float]:
        """Update with one rollout's response lengths (and ensemble disagreement);
        return the signal metrics (z-scores once the warm-up is over)."""
        self._rollouts += 1
        metrics: dict[str, float] = {}
        if self._rollouts <= self.warmup:
            self._lengths.add(length_mean, length_std, count)
            if disagreement is not None:
                self._disagreements.append(float(disagreement))
            return metrics
        z = (length_mean - self._lengths.mean) / max(self._lengths.std, 1.0)
        metrics["hacking/length_z"] = z
        self._raise(step, "length", z, z > self.length_z,
                    f"response length z-score {z:.2f} > {self.length_z} (mean length "
                    f"{length_mean:.1f} tokens vs warm-up {self._lengths.mean:.1f} ± "
                    f"{self._lengths.std:.1f})")
        if disagreement is not None and self._disagreements:
            mean = sum(self._disagreements) / len(self._disagreements)
            spread = math.sqrt(sum((d - mean) ** 2 for d in self._disagreements)
                               / len(self._disagreements))
            dz = (disagreement - mean) / max(spread, 1e-3)
            metrics["hacking/disagreement_z"] = dz
            self._raise(step, "disagreement", dz, dz > self.disagreement_z,
                        f"reward-model ensemble disagreement z-score {dz:.2f} > "
                        f"{self.disagreement_z} (member std {disagreement:.3f} vs warm-up "
                        f"{mean:.3f})")
        metrics["hacking/alerts"] = float(len(self.alerts))
        return metrics

    def observe_eval(self, step: int, kl: float) -> dict[str, float]:
        """Update with one held-out KL; return the number of consecutive rises."""
        self._eval_kl.append(float(kl))
        rises = 0
        for later, earlier in zip(reversed(self._eval_kl), list(reversed(self._eval_kl))[1:]):
            if later > earlier:
                rises += 1
            else:
                break
        self._raise(step, "kl_rising", kl, rises >= self.kl_rising,
                    f"held-out KL to the reference rose at {rises} consecutive evaluations "
                    f"(now {kl:.4f})")
        return {"hacking/kl_rises": float(rises)}

    def replay(self, rollouts: list[dict[str, Any]], evaluations: list[tuple[int, float]]) -> None:
        """Rebuild the state of a resumed run from scratch, quietly: ``rollouts`` are the logged rollout
        rows (``step``, ``length_mean``, ``length_std``, ``sequences``, optional
        ``disagreement``), ``evaluations`` the logged ``(step, held-out KL)`` pairs."""
        self.alerts, self._rollouts, self._lengths = [], 0, _Pooled()
        self._disagreements, self._eval_kl, self._active = [], [], set()
        self.verbose, events = False, []
        events += [(int(r["step"]), 0, r) for r in rollouts]
        events += [(step, 1, kl) for step, kl in evaluations]
        for step, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
            if kind == 0:
                self.observe_rollout(step, float(item["length_mean"]),
                                     float(item["length_std"]), int(item["sequences"]),
                                     item.get("disagreement"))
            else:
                self.observe_eval(step, float(item))
        self.verbose = True

    def write(self, path: str | Path) -> None:
        """``alerts.json``: every alert, in order (written by the main process only)."""
        if is_main_process():
            atomic_write_json(path, {"alerts": [asdict(a) for a in self.alerts]})
