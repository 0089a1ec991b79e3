"""Multi-turn episodes against the executor: the policy proposes, the executor runs,
the next state comes back.

At each turn of a live episode the policy gives ``k`` proposals for the current
state. Every proposal is executed on a copy of the episode and judged by the
execution contract, which gives it a per-subgoal reward::

    r(proposal) = 1 if it passes the contract (parses, runs, makes progress) else 0

The episode then advances with the first proposal that passed (the lowest
index); when none passed, it runs the first proposal, which fails, and the
episode ends there. It also ends when the mission is accomplished or after
``step_budget`` turns. The episode's return is ``1`` when the mission was
accomplished and ``0`` otherwise; ``subgoal_return`` sums the rewards of the
subgoals actually taken. With ``k = 1`` this is the closed loop of
``evaluate_policy``.

The turns give the on-policy data the alignment stages learn from: preference
pairs (a proposal that passed against one that failed, in the same state:
``on_policy_pairs``) and groups of rewarded samples per state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefalign.errors import ConfigError, PrefalignError
from prefalign.tasks.minigrid.context import build_prompt, describe_state
from prefalign.tasks.minigrid.episodes import Episode, make_episode
from prefalign.tasks.minigrid.executor import execute

# prompts, k -> k proposals per prompt
SampleFn = Callable[[list[str], int], list[list[str]]]


@dataclass
class Turn:
    """One state of a live episode, the proposals made there and their verdicts."""

    step: int
    context: str
    completed: list[str]
    proposals: list[str]
    rewards: list[float]
    failures: list[str | None]
    taken: int


@dataclass
class EpisodeRollout:
    """A whole episode: its turns, whether the mission was accomplished, its returns."""

    env_id: str
    seed: int
    turns: list[Turn] = field(default_factory=list)
    accomplished: bool = False

    @property
    def episode_return(self) -> float:
        return 1.0 if self.accomplished else 0.0

    @property
    def subgoal_return(self) -> float:
        return sum(turn.rewards[turn.taken] for turn in self.turns)


def _judge(episode: Episode, proposal: str) -> tuple[float, str | None]:
    result = execute(episode.copy(), proposal)
    return (1.0, None) if result.success else (0.0, result.failure.value)


def rollout_episodes(sample_fn: SampleFn, episodes: Sequence[tuple[str, int]], *, k: int,
                     step_budget: int) -> list[EpisodeRollout]:
    """Play every ``(env_id, seed)`` episode with ``sample_fn`` (see the module docstring);
    all live episodes are asked in one batch per turn."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if step_budget < 1:
        raise ConfigError(f"step_budget must be >= 1, got {step_budget}")
    rollouts = [EpisodeRollout(env_id, int(seed)) for env_id, seed in episodes]
    live = [(rollout, make_episode(rollout.env_id, rollout.seed)) for rollout in rollouts]
    for step in range(step_budget):
        if not live:
            break
        contexts = [describe_state(episode) for _, episode in live]
        proposals = sample_fn([build_prompt(context) for context in contexts], k)
        if len(proposals) != len(live) or any(len(row) != k for row in proposals):
            raise PrefalignError(f"the sampler must return {k} proposals for each of "
                                 f"{len(live)} prompts")
        still_live = []
        for (rollout, episode), context, row in zip(live, contexts, proposals):
            verdicts = [_judge(episode, str(text)) for text in row]
            taken = next((i for i, (reward, _) in enumerate(verdicts) if reward > 0), 0)
            rollout.turns.append(Turn(step, context, list(episode.completed), list(row),
                                      [reward for reward, _ in verdicts],
                                      [failure for _, failure in verdicts], taken))
            passed = execute(episode, str(row[taken])).success
            if passed and episode.mission_accomplished:
                rollout.accomplished = True
            elif passed:
                still_live.append((rollout, episode))
        live = still_live
    return rollouts


def on_policy_pairs(rollouts: Sequence[EpisodeRollout], max_per_state: int = 2) -> list[dict]:
    """``{prompt, chosen, rejected, metadata}`` from the turns where proposals disagree.

    In each state, every distinct non-empty failed proposal (up to ``max_per_state``,
    in the order sampled) is paired with the first proposal that passed. Completions are
    a space and the proposal's stripped text, as in the supervised records.
    ``metadata`` holds env_id, seed, step, the completed subgoals (which replay the
    state from a fresh episode), ``rejected_failure`` and ``source: "on_policy"``.
    """
    pairs: list[dict] = []
    for rollout in rollouts:
        for turn in rollout.turns:
            winners = [p.strip() for p, r in zip(turn.proposals, turn.rewards) if r > 0]
            if not winners:
                continue
            losers: dict[str, str] = {}
            for proposal, reward, failure in zip(turn.proposals, turn.rewards, turn.failures):
                text = proposal.strip()
                if text and reward == 0 and text not in losers and text not in winners:
                    losers[text] = failure
            for rejected, failure in list(losers.items())[:max_per_state]:
                pairs.append({
                    "prompt": build_prompt(turn.context),
                    "chosen": " " + winners[0],
                    "rejected": " " + rejected,
                    "metadata": {"env_id": rollout.env_id, "seed": rollout.seed,
                                 "step": turn.step, "completed": turn.completed,
                                 "rejected_failure": failure, "source": "on_policy"},
                })
    return pairs
