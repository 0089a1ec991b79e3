"""Execution-based evaluation of a subgoal policy, with Wilson confidence intervals.

``evaluate_policy`` measures, per environment:

* single step, on every state of the expert's solved traces: the share of the
  policy's subgoals that parse (grammar validity), that pass the execution
  contract in that state (execution success), and that equal the expert's
  canonical subgoal (expert agreement); plus counts of each error type and of
  subgoals that fall in a perturbation type of the expert decision;
* closed loop, on every seed: the policy proposes subgoals for the live episode
  until the mission is accomplished (success), a subgoal fails the contract,
  or ``step_budget`` subgoals were spent (failures).

The policy is called with a batch of prompts (``build_prompt``) and returns one
text per prompt; outputs are judged after stripping surrounding whitespace, so
generation should stop at the end of the line. Everything returned is plain
JSON-serialisable data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from prefalign.errors import ConfigError, PrefalignError
from prefalign.intervals import wilson_interval
from prefalign.tasks.minigrid.context import build_prompt, describe_state
from prefalign.tasks.minigrid.episodes import ENVIRONMENTS, UnknownEnvironmentError, make_episode
from prefalign.tasks.minigrid.executor import FailureType, execute
from prefalign.tasks.minigrid.grammar import SubgoalParseError, format_subgoal, parse_subgoal
from prefalign.tasks.minigrid.perturb import PERTURBATION_TYPES, Decision
from prefalign.tasks.minigrid.traces import expert_rollout

PolicyFn = Callable[[list[str]], list[str]]
ERROR_NAMES = {failure: ("parse_error" if failure is FailureType.UNPARSEABLE
                         else failure.value.lower()) for failure in FailureType}


def proportion(successes: int, total: int) -> dict:
    """``{"k", "n", "rate", "ci95": [low, high]}`` (``rate`` is ``None`` when n = 0)."""
    low, high = wilson_interval(successes, total)
    return {"k": successes, "n": total, "rate": successes / total if total else None,
            "ci95": [low, high]}


def _call_policy(policy_fn: PolicyFn, prompts: list[str]) -> list[str]:
    outputs = list(policy_fn(prompts))
    if len(outputs) != len(prompts):
        raise PrefalignError(f"the policy returned {len(outputs)} texts for {len(prompts)} prompts")
    return [str(text) for text in outputs]


def _canonical(text: str) -> str | None:
    try:
        return format_subgoal(parse_subgoal(text))
    except SubgoalParseError:
        return None


class _Tally:
    """Counts for one environment (or all of them)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.perturbations: Counter[str] = Counter()
        self.loop_failures: Counter[str] = Counter()

    def add(self, other: _Tally) -> None:
        for mine, theirs in ((self.counts, other.counts), (self.errors, other.errors),
                             (self.perturbations, other.perturbations),
                             (self.loop_failures, other.loop_failures)):
            mine.update(theirs)

    def report(self) -> dict:
        c = self.counts
        decisions, episodes = c["decisions"], c["episodes"]
        return {
            "single_step": {
                "decisions": decisions,
                "expert_unsolved_episodes": c["expert_unsolved"],
                "grammar_valid": proportion(c["valid"], decisions),
                "execution_success": proportion(c["executed"], decisions),
                "expert_agreement": proportion(c["agree"], decisions),
                "errors": {name: self.errors[name] for name in ERROR_NAMES.values()},
                "perturbation_matches": {p: self.perturbations[p] for p in PERTURBATION_TYPES},
            },
            "closed_loop": {
                "episodes": episodes,
                "success": proportion(c["solved"], episodes),
                "mean_subgoals": c["subgoals"] / episodes if episodes else None,
                "failures": {name: self.loop_failures[name]
                             for name in [*ERROR_NAMES.values(), "budget_exhausted"]},
            },
        }


def _single_step(policy_fn: PolicyFn, episodes: list[tuple[str, int]],
                 tallies: dict[str, _Tally]) -> None:
    states = []
    for env_id, seed in episodes:
        rollout = expert_rollout(env_id, seed)
        if rollout is None:
            tallies[env_id].counts["expert_unsolved"] += 1
        states += [(env_id, item) for item in rollout or []]
    outputs = _call_policy(policy_fn, [build_prompt(item.context) for _, item in states])
    for (env_id, item), text in zip(states, outputs):
        tally = tallies[env_id]
        tally.counts["decisions"] += 1
        canonical = _canonical(text)
        result = execute(item.episode.copy(), text)
        tally.counts["valid"] += canonical is not None
        tally.counts["executed"] += result.success
        tally.counts["agree"] += canonical == item.subgoal
        if result.failure is not None:
            tally.errors[ERROR_NAMES[result.failure]] += 1
        if canonical is not None:
            perturbation = Decision(item.episode).classify(canonical)
            if perturbation is not None:
                tally.perturbations[perturbation] += 1


def _closed_loop(policy_fn: PolicyFn, episodes: list[tuple[str, int]], step_budget: int,
                 tallies: dict[str, _Tally]) -> None:
    active = [make_episode(env_id, seed) for env_id, seed in episodes]
    for episode in active:
        tallies[episode.env_id].counts["episodes"] += 1
    for _ in range(step_budget):
        if not active:
            return
        outputs = _call_policy(policy_fn, [build_prompt(describe_state(ep)) for ep in active])
        still_active = []
        for episode, text in zip(active, outputs):
            tally = tallies[episode.env_id]
            result = execute(episode, text)
            tally.counts["subgoals"] += 1
            if not result.success:
                tally.loop_failures[ERROR_NAMES[result.failure]] += 1
            elif episode.mission_accomplished:
                tally.counts["solved"] += 1
            else:
                still_active.append(episode)
        active = still_active
    for episode in active:
        tallies[episode.env_id].loop_failures["budget_exhausted"] += 1


def evaluate_policy(policy_fn: PolicyFn, env_ids: Sequence[str],
                    seeds: Iterable[int] | Mapping[str, Iterable[int]],
                    step_budget: int = 8) -> dict:
    """Single-step and closed-loop metrics of ``policy_fn`` (see the module docstring).

    ``seeds`` are the same for every environment, or given per environment (a
    mapping from environment id to its seeds).

    Returns ``{"step_budget", "seeds", "environments": {env_id: report}, "overall": report}``
    where each report has ``single_step`` and ``closed_loop`` sections; every
    proportion is ``{"k", "n", "rate", "ci95"}`` with a 95% Wilson interval.
    """
    for env_id in env_ids:
        if env_id not in ENVIRONMENTS:
            raise UnknownEnvironmentError(env_id)
    if step_budget < 1:
        raise ConfigError(f"step_budget must be >= 1, got {step_budget}")
    if isinstance(seeds, Mapping):
        per_env = {env_id: [int(seed) for seed in seeds[env_id]] for env_id in env_ids}
    else:
        shared = [int(seed) for seed in seeds]
        per_env = {env_id: shared for env_id in env_ids}
    episodes = [(env_id, seed) for env_id in env_ids for seed in per_env[env_id]]
    tallies = {env_id: _Tally() for env_id in env_ids}
    _single_step(policy_fn, episodes, tallies)
    _closed_loop(policy_fn, episodes, step_budget, tallies)
    overall = _Tally()
    for tally in tallies.values():
        overall.add(tally)
    return {"step_budget": step_budget,
            "seeds": per_env if isinstance(seeds, Mapping) else shared,
            "environments": {env_id: tally.report() for env_id, tally in tallies.items()},
            "overall": overall.report()}
