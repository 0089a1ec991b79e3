"""Evaluating a trained policy against its reference on held-out prompts.

For every prompt both policies answer (greedy by default) and the answers are
scored. Reported:

* ``reward`` / ``reference_reward`` — mean training reward of each side's answers;
* ``win_rate`` — share of prompts where the judge scores the policy's answer
  above the reference's, ties counted half: ``(wins + ½·ties) / n``; the judge
  is a reward model (or the training reward when none is named);
* ``kl`` — ``KL(π‖π_ref) ≈ (1/M) Σ_m Σ_t [log π(y_t) − log π_ref(y_t)]`` over ``M``
  responses sampled from the policy at the rollout temperature (the unbiased
  k1 estimate of the sequence KL);
* ``length`` / ``reference_length`` — mean answer length in tokens;
* ``pass_rate`` / ``reference_pass_rate`` — strict verifier pass rate, with a
  95% Wilson interval, when the reward has a verifier.

``write_policy_report`` adds a histogram of both sides' rewards (PNG) and a
markdown table of example prompts with both answers and their scores, the
largest changes first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from prefalign.engine.rundir import atomic_write_json, atomic_write_text
from prefalign.intervals import wilson_interval
from prefalign.rollout.batch import pack_groups
from prefalign.rollout.types import Completion, SamplingSettings

GenerateFn = Callable[[list[list[int]], SamplingSettings, int], list[list[Completion]]]
LogpsFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]
TIE_TOLERANCE = 1e-6


@dataclass
class PolicySide:
    """One side of the comparison: how it samples, its log-probs of packed sequences,
    and the temperature those log-probs are taken at (``log softmax(z/τ)``)."""

    generate: GenerateFn
    logps: LogpsFn
    temperature: float = 1.0


@dataclass
class EvalSettings:
    """Answers: ``max_new_tokens``, ``temperature`` (0 greedy), ``stop``, the
    ``response_prefix`` rewards see before each answer; KL: ``kl_samples`` per prompt at
    ``kl_temperature``; ``seed`` for any sampling."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    response_prefix: str = ""
    kl_samples: int = 1
    kl_temperature: float = 1.0
    seed: int = 0


@dataclass
class SideAnswers:
    """Answers of one side and their scores."""

    texts: list[str]
    lengths: list[int]
    rewards: list[float]
    judged: list[float]
    passed: list[bool] | None


@dataclass
class PolicyEvaluation:
    """Metrics, both sides' answers, and the prompts they answer."""

    metrics: dict[str, float]
    prompts: list[str]
    policy: SideAnswers
    reference: SideAnswers


def win_rate(policy: list[float], reference: list[float]) -> float:
    """``(wins + ½·ties) / n`` with ties within ``TIE_TOLERANCE``."""
    if not policy:
        return 0.0
    points = [0.5 if abs(p - r) <= TIE_TOLERANCE else float(p > r)
              for p, r in zip(policy, reference)]
    return sum(points) / len(points)


class PolicyEvaluator:
    """Evaluates policies on fixed held-out prompts; the reference's answers are kept."""

    def __init__(self, records: list[dict], prompt_ids: list[list[int]], scorer, judge,
                 settings: EvalSettings, pad_id: int, prompt_text: Callable[[object], str]):
        self.records, self.prompt_ids = records, prompt_ids
        self.scorer, self.judge = scorer, judge or scorer
        self.settings, self.pad_id = settings, pad_id
        self.prompts = [prompt_text(r["prompt"]) for r in records]
        self._reference: SideAnswers | None = None

    def _answer(self, side: PolicySide) -> SideAnswers:
        s = self.settings
        sampling = SamplingSettings(1, s.max_new_tokens, s.temperature, stop=s.stop)
        answers = [group[0] for group in side.generate(self.prompt_ids, sampling, s.seed)]
        texts = [s.response_prefix + a.text for a in answers]
        scores = self.scorer.score([r["prompt"] for r in self.records], texts, self.records)
        judged = scores.total if self.judge is self.scorer else self.judge.score(
            [r["prompt"] for r in self.records], texts, self.records).total
        return SideAnswers(texts, [len(a.token_ids) for a in answers], scores.total.tolist(),
                           judged.tolist(), scores.passed)

    def _kl(self, policy: PolicySide, reference: PolicySide) -> float:
        s = self.settings
        if not policy.temperature == reference.temperature == s.kl_temperature:
            raise ValueError(f"the KL needs both sides' log-probs at the sampling temperature "
                             f"{s.kl_temperature}; got policy {policy.temperature}, reference "
                             f"{reference.temperature}")
        sampling = SamplingSettings(s.kl_samples, s.max_new_tokens, s.kl_temperature,
                                    stop=s.stop)
        groups = policy.generate(self.prompt_ids, sampling, s.seed + 1)
        completions = [c.token_ids for group in groups for c in group]
        tensors = pack_groups(self.prompt_ids, completions, self.pad_id)
        mask = tensors["completion_mask"].float()
        difference = (policy.logps(tensors) - reference.logps(tensors)) * mask
        return float(difference.sum(-1).mean())

    def evaluate(self, policy: PolicySide, reference: PolicySide) -> PolicyEvaluation:
        """Answer, score and compare (see the module docstring)."""
        if self._reference is None:
            self._reference = self._answer(reference)
        ref, mine = self._reference, self._answer(policy)
        n = len(self.records)
        metrics = {
            "reward": sum(mine.rewards) / n, "reference_reward": sum(ref.rewards) / n,
            "win_rate": win_rate(mine.judged, ref.judged),
            "length": sum(mine.lengths) / n, "reference_length": sum(ref.lengths) / n,
        }
        if self.settings.kl_samples > 0:
            metrics["kl"] = self._kl(policy, reference)
        for name, side in (("pass_rate", mine), ("reference_pass_rate", ref)):
            if side.passed is not None:
                metrics[name] = sum(side.passed) / n
        if mine.passed is not None:
            metrics["pass_rate_ci_low"], metrics["pass_rate_ci_high"] = wilson_interval(
                sum(mine.passed), n)
        return PolicyEvaluation(metrics, self.prompts, mine, ref)


def _cell(text: str, limit: int = 300) -> str:
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or "(empty)"


def examples_markdown(evaluation: PolicyEvaluation, count: int = 10,
                      alerts: list[dict] | None = None) -> str:
    """A markdown table: prompt, reference answer and score, policy answer and score,
    sorted by the largest change in score; then the reward-hacking alerts, if any."""
    pol, ref = evaluation.policy, evaluation.reference
    order = sorted(range(len(evaluation.prompts)),
                   key=lambda i: -abs(pol.rewards[i] - ref.rewards[i]))[:count]
    lines = ["| # | prompt | reference | ref. reward | policy | policy reward |",
             "|---|---|---|---|---|---|"]
    for i in order:
        lines.append(f"| {i} | {_cell(evaluation.prompts[i])} | {_cell(ref.texts[i])} | "
                     f"{ref.rewards[i]:.3f} | {_cell(pol.texts[i])} | {pol.rewards[i]:.3f} |")
    summary = ", ".join(f"{k} {v:.4g}" for k, v in evaluation.metrics.items())
    text = (f"# Policy vs reference on {len(evaluation.prompts)} held-out prompts\n\n"
            f"{summary}\n\n" + "\n".join(lines) + "\n")
    if alerts:
        text += "\n## Reward-hacking alerts\n\n" + "".join(
            f"- step {a['step']}: {a['message']}\n" for a in alerts)
    return text


def reward_histogram(evaluation: PolicyEvaluation, path: str | Path) -> Path:
    """Overlaid histograms of the reference's and the policy's rewards (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = evaluation.reference.rewards + evaluation.policy.rewards
    low, high = min(values), max(values)
    bins = torch.linspace(low, high if high > low else low + 1.0, 21).tolist()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.hist(evaluation.reference.rewards, bins=bins, alpha=0.55, label="reference")
    axis.hist(evaluation.policy.rewards, bins=bins, alpha=0.55, label="policy")
    axis.set_xlabel("reward")
    axis.set_ylabel("held-out prompts")
    axis.set_title("Reward on held-out prompts")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_policy_report(evaluation: PolicyEvaluation, out_dir: str | Path,
                        figures_dir: str | Path | None = None, examples: int = 10,
                        alerts: list[dict] | None = None) -> dict[str, Path]:
    """``policy_eval.json`` (metrics and every answer) and ``examples.md`` (with the
    ``alerts`` of the run) in ``out_dir``, ``reward_hist.png`` in ``figures_dir``
    (default ``out_dir``)."""
    out_dir = Path(out_dir)
    paths = {"metrics": out_dir / "policy_eval.json",
             "histogram": Path(figures_dir or out_dir) / "reward_hist.png",
             "examples": out_dir / "examples.md"}
    answers = [{"prompt": p, "reference": r, "reference_reward": rr, "policy": a,
                "policy_reward": ar}
               for p, r, rr, a, ar in zip(evaluation.prompts, evaluation.reference.texts,
                                          evaluation.reference.rewards, evaluation.policy.texts,
                                          evaluation.policy.rewards)]
    atomic_write_json(paths["metrics"], {"metrics": evaluation.metrics, "answers": answers})
    reward_histogram(evaluation, paths["histogram"])
    atomic_write_text(paths["examples"], examples_markdown(evaluation, examples, alerts))
    return paths
