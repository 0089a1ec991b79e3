"""``prefalign eval policy`` for any policy: a policy against its reference.

The policy and its reference answer the same prompts (``compare_policies`` with the
reference as baseline and as KL reference); with ``best_of > 1`` a third row is the
policy as best-of-n (or rejection sampling with ``threshold``) reranked by a
pointwise judge. ``headline`` gives the classic metrics under their usual names:
``reward``/``reference_reward`` (mean score of the reward judge), ``win_rate``
(``(wins + ½·ties)/n`` against the reference), ``kl`` (per-sequence k1),
``length``/``reference_length`` and ``pass_rate`` with its Wilson interval.
"""

from __future__ import annotations

from prefalign.eval.compare import Candidate, CompareSettings, Comparison, compare_policies
from prefalign.eval.policies import PolicySource, resolve_policy


def policy_candidates(model: str, reference: str | None, best_of: int = 1, rerank=None,
                      threshold: float | None = None) -> tuple[list[Candidate], PolicySource]:
    """``[reference, policy(, policy best-of-n)]`` and the reference's source: the
    given one, else the run's starting model, else the model itself."""
    policy = resolve_policy(model, "policy")
    reference_spec = reference or policy.start or policy.model
    ref = resolve_policy(reference_spec, "reference")
    candidates = [Candidate(ref, "reference"), Candidate(policy, "policy")]
    if best_of > 1:
        kind = "rejection" if threshold is not None else "best"
        candidates.append(Candidate(policy, f"policy {kind}-of-{best_of}", best_of, rerank,
                                    threshold))
    return candidates, ref


def evaluate_policy(model: str, records: list[dict], judges: list, *,
                    reference: str | None = None, best_of: int = 1, rerank=None,
                    threshold: float | None = None, settings: CompareSettings | None = None,
                    source: str = "prompts") -> Comparison:
    """The comparison of the module docstring."""
    candidates, ref = policy_candidates(model, reference, best_of, rerank, threshold)
    return compare_policies(candidates, records, judges, baseline=0, reference=ref,
                            settings=settings, source=source)


def headline(comparison: Comparison) -> dict[str, float]:
    """The classic metrics of the module docstring, from the policy's row (row 1)."""
    reference, policy = comparison.rows[0], comparison.rows[1]
    metrics: dict[str, float] = {}
    judges = [j for j in policy["rewards"] if j not in policy["pass"]] or list(policy["rewards"])
    if judges:
        metrics["reward"] = policy["rewards"][judges[0]]["mean"]
        metrics["reference_reward"] = reference["rewards"][judges[0]]["mean"]
    if "win_rate" in policy:
        metrics["win_rate"] = policy["win_rate"]["rate"]
    if "kl_k1_seq" in policy:
        metrics["kl"] = policy["kl_k1_seq"]
    metrics["length"], metrics["reference_length"] = policy["length"], reference["length"]
    if policy["pass"]:
        judge, stats = next(iter(policy["pass"].items()))
        metrics["pass_rate"], metrics["reference_pass_rate"] = (
            stats["rate"], reference["pass"][judge]["rate"])
        metrics["pass_rate_ci_low"], metrics["pass_rate_ci_high"] = (
            stats["ci_low"], stats["ci_high"])
    if judges and len(comparison.rows) > 2:
        metrics["best_of_reward"] = comparison.rows[2]["rewards"][judges[0]]["mean"]
    return metrics
