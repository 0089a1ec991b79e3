"""Run the expert through the executor for N seeds per environment and print a table.

Usage: python scripts/check_expert.py [--seeds 200] [--start 0] [ENV_ID ...]

For each environment: episodes solved out of those run, the mean number of
subgoals and of low-level actions per solved episode, and the failures of the
unsolved ones by type. Exits with status 1 if any episode is unsolved.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from prefalign.tasks.minigrid import ENVIRONMENTS, execute, expert_subgoal, make_episode
from prefalign.tasks.minigrid.traces import MAX_EXPERT_SUBGOALS


def run_expert(env_id: str, seed: int) -> tuple[bool, int, int, str | None]:
    """(solved, subgoals, actions, failure type or None) for one episode."""
    episode = make_episode(env_id, seed)
    for _ in range(MAX_EXPERT_SUBGOALS):
        if episode.mission_accomplished:
            break
        result = execute(episode, expert_subgoal(episode))
        if not result.success:
            return False, len(episode.completed), episode.actions_taken, result.failure.value
    solved = episode.mission_accomplished
    return solved, len(episode.completed), episode.actions_taken, None if solved else "BUDGET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_ids", nargs="*", default=list(ENVIRONMENTS))
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    header = f"{'environment':<28} {'solved':>9} {'rate':>7} {'subgoals':>9} {'actions':>8}  failures"
    print(header)
    print("-" * len(header))
    all_solved = True
    for env_id in args.env_ids:
        solved, subgoals, actions = 0, 0, 0
        failures: Counter[str] = Counter()
        for seed in range(args.start, args.start + args.seeds):
            ok, n_subgoals, n_actions, failure = run_expert(env_id, seed)
            if ok:
                solved, subgoals, actions = solved + 1, subgoals + n_subgoals, actions + n_actions
            else:
                failures[failure] += 1
        all_solved = all_solved and solved == args.seeds
        mean_subgoals = subgoals / solved if solved else float("nan")
        mean_actions = actions / solved if solved else float("nan")
        failure_text = ", ".join(f"{name}={count}" for name, count in failures.items()) or "-"
        print(f"{env_id:<28} {solved:>4}/{args.seeds:<4} {solved / args.seeds:>7.3f} "
              f"{mean_subgoals:>9.2f} {mean_actions:>8.1f}  {failure_text}")
    return 0 if all_solved else 1


if __name__ == "__main__":
    sys.exit(main())
