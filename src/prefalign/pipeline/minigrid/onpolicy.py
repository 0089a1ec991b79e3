"""The MiniGrid pipeline's on-policy stage: the SFT policy practises, the executor judges.

The SFT policy plays every training episode (``episode_split``'s training
episodes of every training environment, demonstrated or not) through ``rollout_episodes``: at
each state it samples ``samples`` proposals, each executed on a copy of the
episode. Pairs come from the states where some proposals passed the execution
contract and some failed (``on_policy_pairs``) — the policy's own mistakes,
malformed and invented subgoals included, each one shown failing. Executing a
proposal needs no demonstration, so this scales past the demonstrated
episodes. Pairs whose state is a validation or test state are refused.

The stage writes the training pairs for DPO and the reward model (on-policy,
perturbation, or both: ``onpolicy.sources``) and a summary of the practice:
the share of practice episodes the sampling policy accomplished and of
proposals that passed, and the failure types of the rejected proposals.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import torch

from prefalign.data.load import read_rows, write_jsonl
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import DataError
from prefalign.eval.minigrid import first_line, restyle_prompt, sample_completions
from prefalign.log import say
from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
from prefalign.pipeline.minigrid.episode_split import episode_split
from prefalign.tasks.minigrid import proportion
from prefalign.tasks.minigrid.context import build_prompt
from prefalign.tasks.minigrid.rollout import on_policy_pairs, rollout_episodes


class SubgoalSampler:
    """``k`` sampled subgoals per prompt from an already loaded causal LM (prompts restyled
    as trained). Unlike ``stages.sampling.PolicySampler``, which loads a model by name, it
    samples from the weights in memory, so the GRPO trainer can sample while it learns."""

    def __init__(self, lm, tokenizer, *, prompt_style: str, temperature: float,
                 max_new_tokens: int, batch_size: int, use_chat_template: bool, seed: int,
                 label: str = "onpolicy"):
        self.lm, self.tokenizer = lm, tokenizer
        self.prompt_style, self.temperature = prompt_style, temperature
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.use_chat_template, self.label = use_chat_template, label
        self.generator = torch.Generator().manual_seed(seed)
        self.states = 0

    def __call__(self, prompts: list[str], k: int) -> list[list[str]]:
        styled = [restyle_prompt(p, self.prompt_style) for p in prompts]
        samples = sample_completions(
            self.lm, self.tokenizer, styled, n=k, temperature=self.temperature,
            max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
            use_chat_template=self.use_chat_template, generator=self.generator)
        self.states += len(prompts)
        say(self.label, f"sampled {k} proposals for {len(prompts)} states "
                        f"({self.states} so far)")
        return [[first_line(text) for text in row] for row in samples]


def run_on_policy(cfg: MinigridPipelineConfig, sft_model: Path, perturbation_pairs: Path,
                  held_out_contexts: Path, out_dir: Path) -> dict:
    """Practice, pair, merge with the configured sources; write ``pairs_train.jsonl`` and
    ``summary.json`` into ``out_dir``; return the summary."""
    from prefalign.models.load import load_model

    settings = cfg.onpolicy
    out_dir.mkdir(parents=True, exist_ok=True)
    data = cfg.data
    train = episode_split(data)["train"]
    summary: dict = {"sources": list(settings.sources)}
    pairs: list[dict] = []
    if "on_policy" in settings.sources:
        lm, tokenizer = load_model(str(sft_model), dtype=cfg.dtype)
        sampler = SubgoalSampler(lm, tokenizer, prompt_style=data.prompt_style,
                                 temperature=settings.temperature,
                                 max_new_tokens=settings.max_new_tokens,
                                 batch_size=settings.batch_size,
                                 use_chat_template=cfg.use_chat_template, seed=cfg.seed)
        episodes = [(env_id, seed) for env_id, seeds in train.items() for seed in seeds]
        say("onpolicy", f"the SFT policy practises {len(episodes)} training episodes, "
                        f"{settings.samples} proposals per state")
        rollouts = rollout_episodes(sampler, episodes, k=settings.samples,
                                    step_budget=settings.step_budget)
        held_out = {build_prompt(c) for c in json.loads(held_out_contexts.read_text())}
        found = on_policy_pairs(rollouts, settings.max_pairs_per_state)
        kept = [p for p in found if p["prompt"] not in held_out]
        if settings.max_pairs is not None and len(kept) > settings.max_pairs:
            chosen = sorted(random.Random(cfg.seed).sample(range(len(kept)), settings.max_pairs))
            kept = [kept[i] for i in chosen]
        turns = [turn for rollout in rollouts for turn in rollout.turns]
        summary["practice"] = {
            "episodes_accomplished": proportion(sum(r.accomplished for r in rollouts),
                                                len(rollouts)),
            "proposals_passed": proportion(int(sum(sum(t.rewards) for t in turns)),
                                           sum(len(t.rewards) for t in turns)),
            "states": len(turns),
            "pairs_found": len(found),
            "pairs_refused_held_out": sum(p["prompt"] in held_out for p in found),
            "pairs_kept": len(kept),
            "rejected_failures": dict(Counter(p["metadata"]["rejected_failure"]
                                              for p in kept)),
            "pairs_per_environment": dict(Counter(p["metadata"]["env_id"] for p in kept)),
        }
        pairs += [{**p, "prompt": restyle_prompt(p["prompt"], data.prompt_style)}
                  for p in kept]
    if "perturbation" in settings.sources:
        perturbed = [dict(row) for _, row in read_rows(perturbation_pairs)]
        for pair in perturbed:
            pair["metadata"] = {**pair.get("metadata", {}), "source": "perturbation"}
        summary["perturbation_pairs"] = len(perturbed)
        pairs += perturbed
    if not pairs:
        raise DataError("the on-policy stage found no pairs: no state where some proposals "
                        "passed and some failed; raise onpolicy.samples or data.train_seeds, "
                        "or add 'perturbation' to onpolicy.sources")
    random.Random(cfg.seed).shuffle(pairs)
    write_jsonl(pairs, out_dir / "pairs_train.jsonl")
    summary["pairs"] = len(pairs)
    summary["pairs_per_source"] = dict(Counter(p["metadata"]["source"] for p in pairs))
    atomic_write_json(out_dir / "summary.json", summary)
    say("onpolicy", f"{len(pairs)} training pairs ({summary['pairs_per_source']})")
    return summary
