"""Which episodes each part of the MiniGrid pipeline may use.

Seeds split into disjoint train / validation / test ranges (``split_seeds``).
With ``data.held_out_compositions = s > 0`` a share s of each environment's
mission compositions is held out (``prefalign.tasks.minigrid.compositions``):
training and validation keep only the episodes whose composition is not held
out, and the test takes, per test environment, the first ``test_seeds`` seeds
from the test range upward whose composition is. Training (demonstrations,
on-policy practice, online RL) thus never sees a test mission, by
construction. The demonstrated episodes are the first ``demo_episodes`` of
each environment's training episodes.
"""

from __future__ import annotations

from prefalign.errors import DataError
from prefalign.pipeline.minigrid.config import MinigridDataConfig
from prefalign.tasks.minigrid import make_episode, split_seeds
from prefalign.tasks.minigrid.compositions import composition, is_held_out

SCAN_FACTOR = 50  # test seeds scanned per held-out episode wanted, at most


def held_out(env_id: str, seed: int, share: float) -> bool:
    """Whether episode (env_id, seed) has a held-out composition."""
    episode = make_episode(env_id, seed)
    return is_held_out(episode.family, composition(episode), share)


def episode_split(cfg: MinigridDataConfig) -> dict[str, dict[str, list[int]]]:
    """``{"train", "demo", "validation", "test"}``, each ``{env_id: [seeds]}``."""
    splits = split_seeds(cfg.train_seeds, cfg.validation_seeds, cfg.test_seeds, cfg.seed_start)
    envs, test_envs = list(cfg.environments), list(cfg.test_environments or cfg.environments)
    share = cfg.held_out_compositions
    if share == 0:
        train = {env: list(splits.train) for env in envs}
        validation = {env: list(splits.validation) for env in envs}
        test = {env: list(splits.test) for env in test_envs}
    else:
        train = {env: [s for s in splits.train if not held_out(env, s, share)] for env in envs}
        for env, seeds in train.items():
            if not seeds:
                raise DataError(f"{env}: every training seed has a held-out composition (a "
                                "family with a single composition, such as DoorKey's yellow "
                                "door, is held out whole or not at all); drop it from "
                                "data.environments or lower data.held_out_compositions")
        validation = {env: [s for s in splits.validation if not held_out(env, s, share)]
                      for env in envs}
        test = {}
        for env in test_envs:
            limit = splits.test.start + SCAN_FACTOR * cfg.test_seeds
            found = [s for s in range(splits.test.start, limit) if held_out(env, s, share)]
            if len(found) < cfg.test_seeds:
                raise DataError(f"{env}: only {len(found)} episodes with a held-out composition "
                                f"among seeds {splits.test.start}-{limit - 1}; raise "
                                "data.held_out_compositions or lower data.test_seeds")
            test[env] = found[: cfg.test_seeds]
    demos = cfg.demo_episodes or cfg.train_seeds
    return {"train": train, "demo": {env: seeds[:demos] for env, seeds in train.items()},
            "validation": validation, "test": test}
