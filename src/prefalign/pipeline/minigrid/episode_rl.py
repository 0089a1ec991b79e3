"""Online RL against the executor over whole episodes: multi-turn GRPO from the SFT policy.

Each round, the policy plays ``G = episodes_per_seed`` episodes of each of
``seeds_per_round`` training seeds (a group: the same environment and seed,
different samples) through ``rollout_episodes``: it proposes one subgoal per
turn, the executor runs it, the next state comes back. Rewards come from
execution alone: ``r_{j,t} = 1`` when subgoal t of episode j passes the
contract, else 0 (the episode ends), and a mission bonus ``R_j = b`` when the
episode accomplishes its mission. Credit goes per subgoal and per episode
through the return-to-go and a per-turn group baseline:

    G_{j,t} = Σ_{t' ≥ t} r_{j,t'} + R_j
    A_{j,t} = G_{j,t} − mean{ G_{j',t} : episodes j' of the group that reached turn t }

(the GRPO baseline of Shao et al. 2024, arXiv 2402.03300, taken per turn, without
the division by the standard deviation, as Dr. GRPO: Liu et al. 2025, arXiv
2503.20783). Every token of the subgoal taken at turn t shares ``A_{j,t}``. The
loss over the round's sequences, in minibatches (one optimizer step each), is

    L = reduce_t PPO-clip(ρ_t, A) + β · reduce_t k3(log π_θ − log π_ref)

with ``ρ_t = π_θ/π_old`` (π_old recorded before the round's first update; the
round's sequences serve ``epochs_per_round`` passes, so the clip matters) and
the reference π_ref the SFT model (the fresh LoRA disabled). A killed run
resumes at the last finished round: the adapter weights, the optimizer and
the round log are saved after every round, and round k's sampling seed is a
function of (seed, k).

The online reward-hacking monitor (``prefalign.eval.hacking``) watches the run:
each turn of a round is one observation of the proposals' lengths (the first
five are the warm-up), each round's mean KL to the reference one evaluation
(an alert when it rose three rounds running); alerts go to ``alerts.json``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from prefalign.data.tokenize import render_prompt
from prefalign.engine.rundir import atomic_write_json
from prefalign.eval.hacking import HackingMonitor
from prefalign.eval.minigrid import restyle_prompt
from prefalign.log import say
from prefalign.losses.kl import token_kl_term
from prefalign.losses.policy import policy_clip_loss
from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
from prefalign.pipeline.minigrid.episode_split import episode_split
from prefalign.pipeline.minigrid.onpolicy import SubgoalSampler
from prefalign.rollout.batch import pack_groups
from prefalign.stages.online.model import PolicyModel
from prefalign.stages.online.rollouts import derived_seed
from prefalign.tasks.minigrid import proportion
from prefalign.tasks.minigrid.context import build_prompt
from prefalign.tasks.minigrid.rollout import EpisodeRollout, rollout_episodes


def turn_advantages(group: list[EpisodeRollout], bonus: float) -> list[list[float]]:
    """``A_{j,t}`` of the module docstring for one group of episodes (same start)."""
    returns = []
    for rollout in group:
        rewards = [turn.rewards[turn.taken] for turn in rollout.turns]
        final = bonus if rollout.accomplished else 0.0
        returns.append([sum(rewards[t:]) + final for t in range(len(rewards))])
    advantages = []
    for episode_returns in returns:
        row = []
        for t, value in enumerate(episode_returns):
            peers = [other[t] for other in returns if len(other) > t]
            row.append(value - sum(peers) / len(peers))
        advantages.append(row)
    return advantages


class EpisodeGRPO:
    """The trainer of the module docstring, for one pipeline run."""

    def __init__(self, cfg: MinigridPipelineConfig, sft_model: Path, out_dir: Path):
        from prefalign.models.load import load_model

        self.cfg, self.settings, self.out_dir = cfg, cfg.rl, out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.lm, self.tokenizer = load_model(str(sft_model), dtype=cfg.dtype,
                                             lora=cfg.rl.lora)
        self.policy = PolicyModel(self.lm, 1.0)
        trainable = [p for p in self.lm.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.rl.lr, weight_decay=0.0)
        self.train = episode_split(cfg.data)["train"]
        self.held_out = {build_prompt(c) for c in json.loads(
            (out_dir.parent / "data" / "held_out_contexts.json").read_text())}
        self.log: list[dict] = []
        self.observations: list[dict] = []
        self.monitor = HackingMonitor(warmup=5, length_z=2.5, kl_rising=3, disagreement_z=2.5)
        self.round = 0

    # -- resume -------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out_dir / "state.pt"

    def restore(self) -> None:
        if not self.state_path.is_file():
            return
        state = torch.load(self.state_path, weights_only=False)
        trainable = {n: p for n, p in self.lm.named_parameters() if p.requires_grad}
        for name, value in state["adapter"].items():
            trainable[name].data.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.round, self.log = state["round"], state["log"]
        self.observations = state["observations"]
        self.monitor.replay(self.observations, [(r["round"], r["kl"]) for r in self.log
                                                if "kl" in r])
        say("rl", f"resuming after round {self.round}")

    def _save_state(self) -> None:
        adapter = {n: p.detach().cpu().clone() for n, p in self.lm.named_parameters()
                   if p.requires_grad}
        partial = self.state_path.with_suffix(".tmp")
        torch.save({"adapter": adapter, "optimizer": self.optimizer.state_dict(),
                    "round": self.round, "log": self.log,
                    "observations": self.observations}, partial)
        partial.replace(self.state_path)
        atomic_write_json(self.out_dir / "rounds.json", self.log)
        self.monitor.write(self.out_dir / "alerts.json")

    def _watch(self, rollouts: list[EpisodeRollout]) -> None:
        """One monitor observation per turn index: the lengths of the proposals made."""
        turns = max((len(r.turns) for r in rollouts), default=0)
        for t in range(turns):
            lengths = [len(r.turns[t].proposals[r.turns[t].taken]) for r in rollouts
                       if len(r.turns) > t]
            row = {"step": self.round + 1, "length_mean": statistics.fmean(lengths),
                   "length_std": statistics.pstdev(lengths), "sequences": len(lengths)}
            self.observations.append(row)
            self.monitor.observe_rollout(row["step"], row["length_mean"], row["length_std"],
                                         row["sequences"])

    # -- one round ----------------------------------------------------------
    def _episodes(self, index: int) -> list[tuple[str, int]]:
        """Round ``index``'s groups: the next ``seeds_per_round`` (env, seed) starts of the
        cycle over every training environment and seed, each ``G`` times."""
        longest = max(map(len, self.train.values()))
        starts = [(env, seeds[i]) for i in range(longest) for env, seeds in self.train.items()
                  if i < len(seeds)]
        count = self.settings.seeds_per_round
        chosen = [starts[(index * count + i) % len(starts)] for i in range(count)]
        return [start for start in chosen for _ in range(self.settings.episodes_per_seed)]

    def _sequences(self, rollouts: list[EpisodeRollout]) -> tuple[list, list, list]:
        size = self.settings.episodes_per_seed
        prompts, completions, advantages = [], [], []
        eos = self.tokenizer.eos_token_id
        for start in range(0, len(rollouts), size):
            group = rollouts[start:start + size]
            for rollout, row in zip(group, turn_advantages(group, self.settings.mission_bonus)):
                for turn, advantage in zip(rollout.turns, row):
                    prompt = build_prompt(turn.context)
                    text = turn.proposals[turn.taken].strip()
                    if prompt in self.held_out or not text or advantage == 0:
                        continue
                    styled = restyle_prompt(prompt, self.cfg.data.prompt_style)
                    prompts.append(self.tokenizer(render_prompt(
                        styled, self.tokenizer, self.cfg.use_chat_template),
                        add_special_tokens=False)["input_ids"])
                    ids = self.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
                    completions.append(ids[: self.settings.max_new_tokens] + [eos])
                    advantages.append(advantage)
        return prompts, completions, advantages

    @torch.no_grad()
    def _frozen_logps(self, batches: list[dict]) -> tuple[list, list]:
        self.policy.eval()
        old, ref = [], []
        for batch in batches:
            old.append(self.policy(*self._inputs(batch))[0])
            with self.policy.reference_context():
                ref.append(self.policy(*self._inputs(batch))[0])
        return old, ref

    @staticmethod
    def _inputs(batch: dict) -> tuple:
        return (batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                batch["completion_mask"])

    def run_round(self) -> dict:
        settings, index = self.settings, self.round
        sampler = SubgoalSampler(
            self.lm, self.tokenizer, prompt_style=self.cfg.data.prompt_style,
            temperature=settings.temperature, max_new_tokens=settings.max_new_tokens,
            batch_size=settings.generation_batch_size,
            use_chat_template=self.cfg.use_chat_template,
            seed=derived_seed(self.cfg.seed, "rl", index), label="rl")
        rollouts = rollout_episodes(sampler, self._episodes(index), k=1,
                                    step_budget=settings.step_budget)
        self._watch(rollouts)
        prompts, completions, advantages = self._sequences(rollouts)
        accomplished = sum(r.accomplished for r in rollouts)
        metrics = {"round": index + 1, "episodes": len(rollouts),
                   "accomplished": proportion(accomplished, len(rollouts)),
                   "mean_subgoal_return": sum(r.subgoal_return for r in rollouts)
                   / len(rollouts), "sequences": len(prompts)}
        if prompts:
            metrics.update(self._update(prompts, completions, advantages))
            self.monitor.observe_eval(index + 1, metrics["kl"])
        self.round += 1
        self.log.append(metrics)
        self._save_state()
        say("rl", f"round {index + 1}/{settings.rounds}: practice episodes accomplished "
                  f"{accomplished}/{len(rollouts)}, {len(prompts)} sequences with signal, "
                  f"KL {metrics.get('kl', 0.0):.4f}")
        return metrics

    def _update(self, prompts: list, completions: list, advantages: list) -> dict:
        settings = self.settings
        pad = self.tokenizer.pad_token_id
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(
            derived_seed(self.cfg.seed, "rl-order", self.round))).tolist()
        size = settings.batch_size
        chunks = [order[i:i + size] for i in range(0, len(order), size)]
        batches = [pack_groups([prompts[i] for i in chunk], [completions[i] for i in chunk], pad)
                   for chunk in chunks]
        olds, refs = self._frozen_logps(batches)
        # The updates run in eval mode too (no dropout), so that the first minibatch's
        # ratio π_θ/π_old is exactly 1.
        losses, kls = [], []
        passes = [(chunk, batch, old, ref) for _ in range(settings.epochs_per_round)
                  for chunk, batch, old, ref in zip(chunks, batches, olds, refs)]
        for chunk, batch, old, ref in passes:
            logps, _ = self.policy(*self._inputs(batch))
            mask = batch["completion_mask"]
            adv = torch.tensor([advantages[i] for i in chunk], dtype=logps.dtype)
            loss, _ = policy_clip_loss(logps, old, adv, mask, clip_eps=settings.clip_eps)
            kl = token_kl_term(logps, ref, mask, "k3")
            total = loss + settings.kl_coef * kl
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_([p for p in self.lm.parameters() if p.requires_grad],
                                           1.0)
            self.optimizer.step()
            losses.append(float(loss.detach()))
            kls.append(float(kl.detach()))
        return {"loss": sum(losses) / len(losses), "kl": sum(kls) / len(kls),
                "mean_abs_advantage": sum(abs(a) for a in advantages) / len(advantages)}


def run_episode_rl(cfg: MinigridPipelineConfig, sft_model: Path, out_dir: Path) -> dict:
    """Train ``cfg.rl.rounds`` rounds (resuming after the last finished one); save the
    adapter to ``out_dir/final`` and the round log to ``out_dir/rounds.json``."""
    from prefalign.models.save import save_model

    trainer = EpisodeGRPO(cfg, sft_model, out_dir)
    trainer.restore()
    say("rl", f"multi-turn GRPO: {cfg.rl.rounds} rounds of {cfg.rl.seeds_per_round} starts x "
              f"{cfg.rl.episodes_per_seed} episodes")
    while trainer.round < cfg.rl.rounds:
        trainer.run_round()
    save_model(trainer.lm, trainer.tokenizer, out_dir / "final")
    return {"rounds": trainer.log}
