"""The MiniGrid pipeline's data stage: MiniGrid expert traces and preference pairs as JSONL files.

Episodes split into train / validation / test by seed range and, optionally,
by held-out mission composition (``episode_split``). From the demonstrated
training episodes come supervised records (the expert's subgoal in each state
it saw) and preference pairs (the expert's subgoal against a perturbed one);
from the validation episodes, the held-out versions of both; the test episodes
are left for the evaluation.

Disjoint seeds do not mean disjoint states: small rooms repeat layouts, so a
validation or test state can occur word for word in a training episode. The
stage measures that (``context_overlap``, before and after) and removes from
training every state that also occurs in a validation trace (the data layer
refuses a prompt in two splits) and, with ``exclude_test_states``, in a test
trace. Repeated states stay (the training distribution is the expert's state
distribution); records are sampled with the pipeline seed when capped and
restyled to the configured prompt style.

Demonstrations can be made realistically scarce and imperfect: only the first
``demo_episodes`` training seeds of each environment are demonstrated, and
with ``demo_noise = p`` each demonstrated subgoal is, with probability p,
replaced by a perturbation of the expert's (a seeded draw per state: an
expert that errs p of the time). The held-out evaluation may use other
environments (``test_environments``); their test traces are generated here for
the overlap check, and every held-out context is written to
``held_out_contexts.json`` so that later stages (on-policy practice) can
refuse them too.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from prefalign.data.load import write_jsonl
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import DataError
from prefalign.eval.minigrid import restyle_prompt
from prefalign.log import say
from prefalign.pipeline.minigrid.artifacts import DATA_FILES, HELD_OUT_CONTEXTS
from prefalign.pipeline.minigrid.config import MinigridDataConfig
from prefalign.pipeline.minigrid.episode_split import episode_split
from prefalign.tasks.minigrid import (
    check_split_leakage,
    context_overlap,
    generate_traces,
    preference_pairs,
    sft_records,
)
from prefalign.tasks.minigrid.context import build_prompt
from prefalign.tasks.minigrid.perturb import PERTURBATION_TYPES, Decision
from prefalign.tasks.minigrid.traces import expert_rollout


def _overlap_by_environment(train: list[dict], held_out: list[dict],
                            env_ids: list[str]) -> dict[str, dict]:
    per_env = {env_id: context_overlap([t for t in train if t["env_id"] == env_id],
                                       [t for t in held_out if t["env_id"] == env_id])
               for env_id in env_ids}
    per_env["all"] = context_overlap(train, held_out)
    return per_env


def _sample(records: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` records: a seeded sample, kept in original order."""
    if limit is None or len(records) <= limit:
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def sample_per_environment(records: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` records with an equal share per environment, kept in original order.

    Environments are filled smallest first: each takes ``min(available, ⌈left / k⌉)``
    of the ``left`` records still to give out among its ``k`` remaining environments,
    so one with few candidates (a single decision per episode) passes its unused
    share on to the others. Within an environment the choice is a seeded sample.
    """
    if limit is None or len(records) <= limit:
        return records
    by_env: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_env.setdefault(record["metadata"]["env_id"], []).append(index)
    rng, left, keep = random.Random(seed), limit, []
    ordered = sorted(by_env.items(), key=lambda item: (len(item[1]), item[0]))
    for remaining_envs, (_, indices) in zip(range(len(ordered), 0, -1), ordered):
        take = min(len(indices), -(-left // remaining_envs))
        keep += rng.sample(indices, take)
        left -= take
    return [records[i] for i in sorted(keep)]


def _restyle(records: list[dict], style: str) -> list[dict]:
    return [{**record, "prompt": restyle_prompt(record["prompt"], style)} for record in records]


def _sft_rows(traces: list[dict]) -> list[dict]:
    rows = sft_records(traces)
    for row, trace in zip(rows, traces):
        row["metadata"] = {"env_id": trace["env_id"], "seed": trace["seed"],
                           "step": trace["step"]}
    return rows


def noisy_traces(env_ids: list[str], seeds: range, noise: float) -> list[dict]:
    """Expert trace steps of ``seeds`` whose subgoal is, with probability ``noise``,
    a perturbation of the expert's (type and candidate drawn by a generator seeded
    with the state's env_id, seed and step); changed steps carry ``noisy: True``."""
    records = []
    for env_id in env_ids:
        for seed in seeds:
            for item in expert_rollout(env_id, seed) or []:
                record = {"env_id": env_id, "seed": int(seed), "step": item.step,
                          "context": item.context, "expert_subgoal": item.subgoal}
                rng = random.Random(f"demo-noise/{env_id}/{seed}/{item.step}")
                if noise > 0 and rng.random() < noise:
                    decision = Decision(item.episode)
                    kinds = [k for k in PERTURBATION_TYPES if decision.candidates(k)]
                    if kinds:
                        wrong = decision.choose(rng.choice(kinds), rng)
                        record.update(expert_subgoal=wrong, noisy=True)
                records.append(record)
    return records


def _traces(seeds_by_env: dict[str, list[int]]) -> list[dict]:
    return [record for env, seeds in seeds_by_env.items()
            for record in generate_traces([env], seeds)]


def build_minigrid_data(cfg: MinigridDataConfig, out_dir: str | Path, seed: int) -> dict:
    """Write the four JSONL files of ``DATA_FILES`` into ``out_dir``; return the summary
    (seed ranges, counts per environment, state overlap before and after exclusion)."""
    out_dir = Path(out_dir)
    envs = list(cfg.environments)
    test_envs = list(cfg.test_environments or envs)
    split = episode_split(cfg)
    say("data", f"expert traces of {len(envs)} training and {len(test_envs)} test environments"
                + (f"; {cfg.held_out_compositions:.0%} of mission compositions held out"
                   if cfg.held_out_compositions else ""))
    traces = {"train": [record for env in envs
                        for record in noisy_traces([env], split["demo"][env], cfg.demo_noise)],
              "validation": _traces(split["validation"]),
              "test": _traces(split["test"])}
    check_split_leakage(traces)
    overlap_before = _overlap_by_environment(traces["train"], traces["test"], test_envs)
    excluded = {t["context"] for t in traces["validation"]}
    if cfg.exclude_test_states:
        excluded |= {t["context"] for t in traces["test"]}
    train_traces = [t for t in traces["train"] if t["context"] not in excluded]
    overlap_after = _overlap_by_environment(train_traces, traces["test"], test_envs)

    sft_train = _sample(_sft_rows(train_traces), cfg.max_sft_examples, seed)
    sft_validation = _sft_rows(traces["validation"])
    say("data", f"{len(sft_train)} SFT examples ({len(traces['train']) - len(train_traces)} "
                f"training states dropped as they occur in held-out episodes)")

    say("data", f"preference pairs ({', '.join(cfg.perturbations)})")
    excluded_prompts = {build_prompt(context) for context in excluded}
    pairs_train = [p for env in envs
                   for p in preference_pairs([env], split["demo"][env], cfg.perturbations)
                   if p["prompt"] not in excluded_prompts]
    sample_pairs = sample_per_environment if cfg.pair_sampling == "per_environment" else _sample
    pairs_train = sample_pairs(pairs_train, cfg.max_pairs, seed)
    pairs_validation = [p for env in envs for p in preference_pairs(
        [env], split["validation"][env], cfg.perturbations)]
    if not sft_train or not pairs_train:
        raise DataError(f"no training data left: {len(sft_train)} SFT examples and "
                        f"{len(pairs_train)} pairs; raise data.train_seeds")
    outputs = {"sft_train": sft_train, "sft_validation": sft_validation,
               "pairs_train": pairs_train, "pairs_validation": pairs_validation}
    for key, records in outputs.items():
        write_jsonl(_restyle(records, cfg.prompt_style), out_dir / DATA_FILES[key])
    atomic_write_json(out_dir / HELD_OUT_CONTEXTS, sorted(
        {t["context"] for t in traces["validation"]} | {t["context"] for t in traces["test"]}))
    say("data", f"{len(pairs_train)} training pairs, {len(sft_validation)} validation "
                f"examples, {len(pairs_validation)} validation pairs")
    return {
        "environments": envs,
        "test_environments": test_envs,
        "demo_episodes": cfg.demo_episodes or cfg.train_seeds,
        "held_out_compositions": cfg.held_out_compositions,
        "episodes": split,
        "demo_noise": cfg.demo_noise,
        "noisy_sft_examples": sum(bool(t.get("noisy")) for t in train_traces),
        "seeds": {name: [min(min(v) for v in split[name].values() if v),
                         max(max(v) for v in split[name].values() if v) + 1]
                  for name in ("train", "validation", "test")},
        "prompt_style": cfg.prompt_style,
        "exclude_test_states": cfg.exclude_test_states,
        "counts": {key: len(records) for key, records in outputs.items()},
        "sft_per_environment": dict(Counter(r["metadata"]["env_id"] for r in sft_train)),
        "pairs_per_environment": dict(Counter(p["metadata"]["env_id"] for p in pairs_train)),
        "pairs_per_perturbation": dict(Counter(p["metadata"]["perturbation"]
                                               for p in pairs_train)),
        "rejected_failing": sum(p["metadata"]["rejected_failure"] is not None
                                for p in pairs_train),
        "test_states": len(traces["test"]),
        "test_state_overlap": {"before_exclusion": overlap_before,
                               "after_exclusion": overlap_after},
    }
