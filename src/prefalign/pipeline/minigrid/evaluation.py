"""The MiniGrid pipeline's evaluation stage: every policy on the held-out test episodes.

Each policy (base model, SFT, DPO, DPO with best-of-n reranking by the reward
model) plays the test seeds of every environment through ``evaluate_policy``:
single-step decisions on the expert's states and closed-loop episodes judged by
the executor. One result file per policy (``eval/<policy>.json``) is written as
soon as it is done, so an interrupted evaluation continues with the next
policy; ``eval/summary.json`` collects the headline numbers. Best-of-n keeps every
state's candidates and reward-model scores, from which ``rerank_audit.json``
computes the reward-hacking signals for the pipeline's reward model and for
the one trained on perturbation pairs alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from prefalign.engine.rundir import atomic_write_json
from prefalign.eval.minigrid import BestOfNPolicy, GreedyPolicy
from prefalign.eval.rerank_audit import audit_rerank
from prefalign.log import say
from prefalign.pipeline.minigrid.artifacts import ARTIFACTS
from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
from prefalign.pipeline.minigrid.episode_split import episode_split
from prefalign.tasks.minigrid import evaluate_policy, proportion
from prefalign.tasks.minigrid.grammar import parses

CANDIDATES_FILE = "dpo_best_of_n_candidates.json"
AUDIT_STATES = 200  # states audited (the first ones evaluated: single-step states, in order)


def held_out_seeds(cfg: MinigridPipelineConfig) -> dict[str, list[int]]:
    """The held-out test seeds of each test environment (the data stage's split)."""
    return episode_split(cfg.data)["test"]


def test_environments(cfg: MinigridPipelineConfig) -> list[str]:
    """The environments of the held-out evaluation."""
    return list(cfg.data.test_environments or cfg.data.environments)


def policy_sources(cfg: MinigridPipelineConfig, root: Path) -> dict[str, str]:
    """The model each policy generates with."""
    return {"base": cfg.model, "sft": str(ARTIFACTS["sft_model"].location(root)),
            "dpo": str(ARTIFACTS["dpo_model"].location(root)),
            "dpo_best_of_n": str(ARTIFACTS["dpo_model"].location(root)),
            "rl": str(ARTIFACTS["rl_model"].location(root))}


def _build_policy(name: str, cfg: MinigridPipelineConfig, root: Path, lm, tokenizer):
    common = dict(prompt_style=cfg.data.prompt_style, max_new_tokens=cfg.eval.max_new_tokens,
                  batch_size=cfg.eval.batch_size, use_chat_template=cfg.use_chat_template,
                  label=f"eval {name}")
    if name != "dpo_best_of_n":
        return GreedyPolicy(lm, tokenizer, **common)
    from prefalign.rewards import RewardModel

    reward_model = RewardModel.load(ARTIFACTS["reward_model"].location(root), dtype=cfg.dtype)
    return BestOfNPolicy(lm, tokenizer, reward_model, n=cfg.eval.best_of_n,
                         temperature=cfg.eval.temperature, seed=cfg.seed,
                         guard=cfg.eval.best_of_n_guard,
                         include_greedy=cfg.eval.best_of_n_greedy, **common)


def perturbation_error_rate(report: dict) -> dict:
    """Share of single-step decisions that fall in a perturbation type, with its interval."""
    single = report["single_step"]
    return proportion(sum(single["perturbation_matches"].values()), single["decisions"])


def headline(result: dict) -> dict:
    """The numbers the report leads with, overall and per environment."""
    def numbers(report: dict) -> dict:
        single = report["single_step"]
        return {"closed_loop_success": report["closed_loop"]["success"],
                "single_step_success": single["execution_success"],
                "grammar_valid": single["grammar_valid"],
                "expert_agreement": single["expert_agreement"],
                "perturbation_errors": perturbation_error_rate(report)}

    return {"overall": numbers(result["overall"]),
            "environments": {env: numbers(rep) for env, rep in result["environments"].items()}}


def audit_best_of_n(cfg: MinigridPipelineConfig, root: Path) -> dict:
    """Hacking signals of best-of-n (``prefalign.eval.rerank_audit``) on the first
    ``AUDIT_STATES`` states, for the pipeline's reward model, whose scores were kept with
    the candidates, and for the reward model of perturbation pairs alone, which rescores
    the same candidates."""
    from prefalign.rewards import RewardModel

    states = json.loads((root / "eval" / CANDIDATES_FILE).read_text())[:AUDIT_STATES]
    candidates = [state["candidates"] for state in states]
    audits = {"pipeline reward model": audit_rerank(
        candidates, [torch.tensor(state["members"]) for state in states], parses)}
    baseline = RewardModel.load(ARTIFACTS["perturbation_reward_model"].location(root),
                                dtype=cfg.dtype)
    prompts = [state["prompt"] for state in states for _ in state["candidates"]]
    texts = [" " + text for state in states for text in state["candidates"]]
    scores = baseline.score_members(prompts, texts, batch_size=cfg.eval.batch_size)
    members, offset = [], 0
    for state in states:
        members.append(scores[:, offset:offset + len(state["candidates"])])
        offset += len(state["candidates"])
    audits["perturbation-only reward model"] = audit_rerank(candidates, members, parses)
    for name, audit in audits.items():
        for alert in audit["alerts"]:
            say("eval", f"hacking alert ({name}): {alert['message']}")
    return audits


def run_evaluation(cfg: MinigridPipelineConfig, root: Path) -> dict:
    """Evaluate ``cfg.eval.policies`` (skipping those already written); write the summary."""
    from prefalign.models.load import load_model

    out_dir = root / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = held_out_seeds(cfg)
    sources = policy_sources(cfg, root)
    loaded: tuple[str, object, object] | None = None
    summary: dict[str, dict] = {}
    for name in cfg.eval.policies:
        path = out_dir / f"{name}.json"
        if path.is_file():
            say("eval", f"{name}: already evaluated ({path})")
        else:
            if loaded is None or loaded[0] != sources[name]:
                loaded = (sources[name], *load_model(sources[name], dtype=cfg.dtype))
            policy = _build_policy(name, cfg, root, loaded[1], loaded[2])
            say("eval", f"{name}: {sum(map(len, seeds.values()))} test episodes of "
                        f"{len(seeds)} environments (single step, then closed loop)")
            started = time.perf_counter()
            result = evaluate_policy(policy, test_environments(cfg), seeds,
                                     step_budget=cfg.eval.step_budget)
            result.update(policy=name, model=sources[name], generation=policy.stats(),
                          seconds=round(time.perf_counter() - started, 1))
            if name == "dpo_best_of_n":
                atomic_write_json(out_dir / CANDIDATES_FILE, policy.audit)
            atomic_write_json(path, result)
            success = result["overall"]["closed_loop"]["success"]
            say("eval", f"{name}: closed-loop success {success['k']}/{success['n']} "
                        f"in {result['seconds']:.0f}s")
        result = json.loads(path.read_text())
        summary[name] = {**headline(result), "generation": result["generation"],
                         "seconds": result["seconds"]}
    if "dpo_best_of_n" in cfg.eval.policies:
        atomic_write_json(out_dir / "rerank_audit.json", audit_best_of_n(cfg, root))
    atomic_write_json(ARTIFACTS["evaluation"].location(root),
                      {"policies": summary, "order": list(cfg.eval.policies),
                       "environments": test_environments(cfg),
                       "training_environments": list(cfg.data.environments),
                       "test_seeds": seeds,
                       "step_budget": cfg.eval.step_budget})
    return {name: values["overall"]["closed_loop_success"]["rate"]
            for name, values in summary.items()}
