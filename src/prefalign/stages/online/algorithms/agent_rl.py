"""Multi-turn RL over whole tool-using episodes: GRPO or RLOO for ReAct agents.

Each round ``k`` the current policy plays ``G = rollout.num_samples`` episodes of each
of ``rollout.prompts_per_rollout`` training tasks (``data.train`` is an agent task
source, ``agent:set=chains-train``), sampling at ``rollout.temperature``: it writes a
ReAct turn, the harness runs the tool it names and returns the result as the next
user message, until a final answer or ``agent_rl.max_turns``
(:mod:`prefalign.agents.episodes`). The episode's reward is its answer score plus
``agent_rl.sequence_weight`` times its tool-sequence score, and its advantage is
group-relative over the task's ``G`` episodes::

    GRPO:  A_j = (R_j − mean_g R_g) / (std_g R_g + ε)   (policy.normalize_std; Shao et al. 2024)
    RLOO:  A_j = R_j − (1/(G−1)) Σ_{g≠j} R_g            (Ahmadian et al. 2024)

Every token of every policy turn of episode ``j`` shares ``A_j``. A turn is one
sequence — its prompt is the conversation so far, tool results included, and its
completion the policy's reply — so the loss never trains on tool text: tool results
are only ever prompt tokens. The loss over a micro-batch of turns is

    L = reduce_t PPO-clip(ρ_t, A) + β · reduce_t k3(log π_θ − log π_ref)

with ``ρ = π_θ/π_old`` (π_old: the log-probs recorded when the round was played) and
π_ref the starting model (the adapter disabled). A round trains for
``agent_rl.steps_per_round`` optimizer steps over its turns in a seeded order
(cycled when there are fewer turns than a round takes). Each round's turns,
advantages and old log-probs are stored in ``buffer/round-<k>.json``, so a resumed
run trains on exactly what it played. The evaluation after each round plays the
``agent_rl.eval_tasks`` set greedily: answer and sequence scores with Wilson
intervals, in ``agent_eval.json`` and the metrics.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from prefalign.agents.episodes import Episode, play_episodes
from prefalign.agents.harness import score_answer
from prefalign.agents.protocol import STOP
from prefalign.agents.task_source import find_task
from prefalign.agents.tasks import load_task_set
from prefalign.config import StrictModel, TrainConfig
from prefalign.config.online import OnlineConfig
from prefalign.engine.algorithm import StepOutput
from prefalign.engine.distributed import is_main_process
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import ConfigError
from prefalign.intervals import wilson_interval
from prefalign.log import say
from prefalign.losses.kl import token_kl_term
from prefalign.losses.policy import grpo_advantages, policy_clip_loss, rloo_advantages
from prefalign.rollout.batch import encode_prompts, pack_groups
from prefalign.rollout.types import SamplingSettings
from prefalign.stages.online.registry import OnlineAlgorithm, register_online_algorithm
from prefalign.stages.online.rollouts import derived_seed, seeded_permutation
from prefalign.stages.online.sequences import forward, forward_in_batches, select_groups
from prefalign.stages.online.setup import OnlineSetup


class AgentRLSettings(StrictModel):
    """``agent_rl:`` settings."""

    baseline: Literal["grpo", "rloo"] = Field("grpo", description="Group-relative (GRPO) "
                                              "or leave-one-out (RLOO) advantages.")
    rounds: int = Field(10, gt=0, description="Rounds of play-then-train.")
    steps_per_round: int = Field(4, gt=0, description="Optimizer steps on each round's turns.")
    max_turns: int = Field(6, gt=0, description="Policy turns per episode.")
    sequence_weight: float = Field(0.0, ge=0, description="Weight w of the tool-sequence "
                                   "score in the reward R = answer + w·sequence.")
    eval_tasks: str = Field("chains", description="Task set played greedily after each round.")
    eval_limit: int = Field(35, gt=0, description="First N tasks of eval_tasks.")


@dataclass
class TurnBatch:
    """Turns of one micro-batch: ids, their episode's advantage, old log-probs."""

    turns: list[dict]


def episode_advantages(rewards: list[float], group: int, baseline: str,
                       normalize_std: bool) -> list[float]:
    """Per-episode advantages of rewards grouped ``group`` at a time (module docstring)."""
    table = torch.tensor(rewards, dtype=torch.float64).view(-1, group)
    if baseline == "rloo":
        return rloo_advantages(table).reshape(-1).tolist()
    return grpo_advantages(table, normalize_std).reshape(-1).tolist()


class AgentRLAlgorithm:
    """Play → score → train on the round's turns, ``agent_rl.rounds`` times."""

    def __init__(self, setup: OnlineSetup, spec: OnlineAlgorithm):
        self.setup, self.spec, cfg = setup, spec, setup.cfg
        self.settings: AgentRLSettings = cfg.agent_rl
        self.micro_per_round = self.settings.steps_per_round * cfg.train.grad_accum
        self.rounds: dict[int, list[dict]] = {}
        self.buffer_dir = setup.run.root / "buffer"
        self.eval_set = load_task_set(self.settings.eval_tasks)
        self.last_step, self.last_evaluation = 0, None

    def num_batches(self, epoch: int) -> int:
        return self.settings.rounds * self.micro_per_round

    def manifest(self) -> dict:
        return {"rounds": self.settings.rounds, "baseline": self.settings.baseline,
                "steps_per_round": self.settings.steps_per_round}

    # -- playing -------------------------------------------------------------------
    def _sampler(self, seed: int, greedy: bool):
        setup, cfg = self.setup, self.setup.cfg
        settings = SamplingSettings(1, cfg.rollout.max_new_tokens,
                                    0.0 if greedy else cfg.rollout.temperature,
                                    cfg.rollout.top_p, cfg.rollout.top_k, STOP)
        calls = iter(range(10**9))

        def sample(conversations: list[list[dict]]):
            prompt_ids = encode_prompts([{"prompt": c} for c in conversations], setup.tokenizer,
                                        max_prompt_length=cfg.data.max_prompt_length,
                                        truncation=cfg.data.truncation)
            groups = setup.engine.generate(prompt_ids, settings, seed + next(calls))
            return [(ids, g[0].token_ids, g[0].text.split(STOP[0])[0])
                    for ids, g in zip(prompt_ids, groups)]

        return sample

    def _jobs(self, round_index: int) -> list:
        records, size = self.setup.records, self.setup.cfg.rollout.prompts_per_rollout
        passes = max(1, len(records) // size)
        which, position = divmod(round_index, passes)
        order = seeded_permutation(len(records), self.setup.cfg.train.seed, "tasks", which)
        chosen = [records[i] for i in order[position * size:(position + 1) * size]]
        jobs = []
        for record in chosen:
            task = find_task(record)
            task_set = load_task_set(record["task_set"])
            jobs += [(task, task_set)] * self.setup.cfg.rollout.num_samples
        return jobs

    def _play(self, round_index: int) -> list[dict]:
        setup, cfg = self.setup, self.setup.cfg
        setup.engine.sync_weights(setup.policy.lm)
        seed = derived_seed(cfg.train.seed, "round", round_index)
        episodes = play_episodes(self._jobs(round_index), self._sampler(seed, greedy=False),
                                 self.settings.max_turns, score_answer)
        rewards = [e.answer_score + self.settings.sequence_weight * e.sequence_score
                   for e in episodes]
        advantages = episode_advantages(rewards, cfg.rollout.num_samples,
                                        self.settings.baseline, cfg.policy.normalize_std)
        turns = [{"prompt_ids": t.prompt_ids, "reply_ids": t.reply_ids, "advantage": a,
                  "episode": j} for j, (e, a) in enumerate(zip(episodes, advantages))
                 for t in e.turns if t.reply_ids]
        if turns:
            self._old_logps(turns)
        stats = self._stats(round_index, episodes, rewards, turns)
        if is_main_process():
            atomic_write_json(self.buffer_dir / f"round-{round_index}.json",
                              {"stats": stats, "turns": turns})
            say(self.spec.name, f"round {round_index}: answer {stats['answer']:.3f}, "
                f"sequence {stats['sequence']:.3f}, {len(turns)} turns")
        return turns

    def _old_logps(self, turns: list[dict]) -> None:
        """π_old: each turn's reply log-probs under the policy that played it."""
        tensors = pack_groups([t["prompt_ids"] for t in turns], [t["reply_ids"] for t in turns],
                              self.setup.pad_id)
        with torch.no_grad(), self.setup.autocast():
            logps, _ = forward_in_batches(self.setup.policy, tensors,
                                          self.setup.cfg.train.batch_size)
        for row, turn in enumerate(turns):
            turn["old_logps"] = logps[row, :len(turn["reply_ids"])].tolist()

    @staticmethod
    def _stats(round_index: int, episodes: list[Episode], rewards: list[float],
               turns: list[dict]) -> dict:
        count = len(episodes)
        return {"round": round_index, "episodes": count, "turns": len(turns),
                "answer": sum(e.answer_score for e in episodes) / count,
                "sequence": sum(e.sequence_score for e in episodes) / count,
                "reward": sum(rewards) / count,
                "finished": sum(bool(e.answer) for e in episodes) / count}

    def _round(self, round_index: int) -> list[dict]:
        if round_index not in self.rounds:
            path = self.buffer_dir / f"round-{round_index}.json"
            self.rounds[round_index] = (json.loads(path.read_text())["turns"] if path.is_file()
                                        else self._play(round_index))
        return self.rounds[round_index]

    # -- the Engine's interface --------------------------------------------------------
    def batch(self, epoch: int, index: int) -> TurnBatch:
        round_index, within = divmod(index, self.micro_per_round)
        self.last_step = index // self.setup.cfg.train.grad_accum + 1
        turns = self._round(round_index)
        if not turns:
            return TurnBatch([])
        size = self.setup.cfg.train.batch_size
        picked = []
        for k in range(within * size, (within + 1) * size):
            cycle, position = divmod(k, len(turns))
            order = seeded_permutation(len(turns), self.setup.cfg.train.seed, "turns",
                                       round_index, cycle)
            picked.append(turns[order[position]])
        return TurnBatch(picked)

    def step(self, model: torch.nn.Module, batch: TurnBatch) -> StepOutput:
        cfg, device = self.setup.cfg, next(model.parameters()).device
        turns = batch.turns
        if not turns:
            zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return StepOutput(zero, {"turns": 0.0})
        tensors = pack_groups([t["prompt_ids"] for t in turns], [t["reply_ids"] for t in turns],
                              self.setup.pad_id)
        packed = select_groups(tensors, range(len(turns)), device)
        mask = packed["completion_mask"]
        logps, _ = forward(model, packed)
        old = torch.zeros_like(logps)
        for row, turn in enumerate(turns):
            old[row, :len(turn["old_logps"])] = torch.tensor(turn["old_logps"], device=device)
        advantages = torch.tensor([t["advantage"] for t in turns], dtype=logps.dtype,
                                  device=device)
        loss, clip = policy_clip_loss(logps, old.to(logps.dtype), advantages, mask,
                                      cfg.policy.clip_eps, cfg.policy.clip_eps_high,
                                      cfg.policy.reduction)
        metrics = {k: float(v) for k, v in clip.items()}
        if cfg.kl.coef > 0:
            ref = self.setup.reference.batch_logps(packed)
            kl = token_kl_term(logps, ref, mask, cfg.kl.estimator, cfg.policy.reduction)
            loss = loss + cfg.kl.coef * kl
            metrics["kl"] = float(kl.detach())
        metrics["advantage_mean"] = float(advantages.mean())
        tokens = int(packed["prompt_mask"].sum() + mask.sum())
        return StepOutput(loss, metrics, tokens=tokens)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Greedy episodes on ``agent_rl.eval_tasks``: answer and sequence scores."""
        self.setup.engine.sync_weights(self.setup.policy.lm)
        jobs = [(t, self.eval_set) for t in self.eval_set.tasks[:self.settings.eval_limit]]
        episodes = play_episodes(jobs, self._sampler(0, greedy=True), self.settings.max_turns,
                                 score_answer)
        n = len(episodes)
        answer = sum(e.answer_score for e in episodes)
        low, high = wilson_interval(answer, n)
        metrics = {"answer": answer / n, "answer_low": low, "answer_high": high,
                   "sequence": sum(e.sequence_score for e in episodes) / n}
        if is_main_process():
            by_level: dict[int, list[float]] = {}
            for e in episodes:
                by_level.setdefault(e.task.level, []).append(e.answer_score)
            atomic_write_json(self.setup.run.root / "agent_eval.json", {
                "step": self.last_step, **metrics,
                "by_level": {k: math.fsum(v) / len(v) for k, v in sorted(by_level.items())},
                "answers": [{"task": e.task.id, "answer": e.answer, "score": e.answer_score}
                            for e in episodes]})
        return metrics


def train_config(cfg: OnlineConfig) -> TrainConfig:
    """``rounds × steps_per_round`` steps, an evaluation after every round."""
    steps = cfg.agent_rl.steps_per_round
    return TrainConfig.model_validate({**cfg.train.model_dump(),
                                       "max_steps": cfg.agent_rl.rounds * steps,
                                       "eval_every": steps})


def check(cfg: OnlineConfig) -> None:
    if cfg.train.max_steps is not None:
        raise ConfigError("agent-rl sets its length with agent_rl.rounds and "
                          "agent_rl.steps_per_round; remove train.max_steps")


AGENT_RL = register_online_algorithm(OnlineAlgorithm(
    name="agent-rl",
    summary="Multi-turn GRPO/RLOO over whole tool-using ReAct episodes (agent_rl.baseline): "
            "the policy acts, the tools answer, only the policy's turns are trained.",
    settings=AgentRLSettings, needs_reference=True, kl="loss", min_group=2,
    group_reason="the advantage compares episodes of the same task", check=check,
    train_config=train_config, trainer=AgentRLAlgorithm))
