"""Multi-turn RL over tool-using episodes (prefalign agent-rl) on the tiny model: the
advantages, where tool text goes (prompts only), and a run end to end."""

from __future__ import annotations

import json
import math

import pytest

from prefalign.agents.tasks import load_task_set
from prefalign.engine.metrics import read_metrics
from prefalign.stages.online import load_online_config, run_online
from prefalign.stages.online.algorithms.agent_rl import AgentRLAlgorithm, episode_advantages


def test_episode_advantages_follow_grpo_and_rloo():
    rewards = [1.0, 0.0, 0.0, 1.0, 2.0, 0.5]
    group = 3
    for g in range(2):
        r = rewards[g * group:(g + 1) * group]
        mean = sum(r) / group
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / group)
        grpo = episode_advantages(rewards, group, "grpo", True)[g * group:(g + 1) * group]
        plain = episode_advantages(rewards, group, "grpo", False)[g * group:(g + 1) * group]
        rloo = episode_advantages(rewards, group, "rloo", True)[g * group:(g + 1) * group]
        for j in range(group):
            assert grpo[j] == pytest.approx((r[j] - mean) / (std + 1e-6))
            assert plain[j] == pytest.approx(r[j] - mean)
            others = (sum(r) - r[j]) / (group - 1)
            assert rloo[j] == pytest.approx(r[j] - others)


def _scripted_sampler(algorithm: AgentRLAlgorithm):
    """Plays chain tasks like the oracle, except that every second episode of a group
    answers wrongly; real prompt token ids, reply ids from the tokenizer."""
    from prefalign.rollout.batch import encode_prompts

    tokenizer = algorithm.setup.tokenizer
    chains = {t.instruction: t for name in ("chains-train", "chains")
              for t in load_task_set(name).tasks}
    seen: dict[str, int] = {}

    def sample(conversations):
        out = []
        for messages in conversations:
            task = chains[messages[1]["content"]]
            done = sum(m["content"].startswith("Observation:") for m in messages)
            if done < len(task.oracle):
                text = f"Thought: next\nAction: search[{task.oracle[done][1]}]"
            else:
                seen[task.id] = seen.get(task.id, 0) + 1
                answer = task.answer if seen[task.id] % 2 else "Nobody"
                text = f"Thought: done\nFinal Answer: {answer}"
            ids = encode_prompts([{"prompt": messages}], tokenizer)[0]
            out.append((ids, tokenizer(text, add_special_tokens=False)["input_ids"], text))
        return out

    return lambda seed, greedy: sample


def test_agent_rl_trains_on_policy_turns_only(tiny_model_dir, tmp_path, monkeypatch):
    cfg = load_online_config("agent-rl", None, [
        f"model.name={tiny_model_dir}", "data.train=agent:set=chains-train&limit=3",
        "data.eval_fraction=0", "rewards=[{name: agent}]", "rollout.max_new_tokens=8",
        "rollout.prompts_per_rollout=2", "rollout.num_samples=2", "train.batch_size=2",
        "train.grad_accum=1", f"output_dir={tmp_path}", "name=agent-rl", "model.lora.r=4",
        "agent_rl.rounds=2", "agent_rl.steps_per_round=2", "agent_rl.max_turns=4",
        "agent_rl.eval_tasks=chains", "agent_rl.eval_limit=2", "kl.coef=0.05",
        "train.lr=1e-2", "data.max_prompt_length=1024"])
    original = AgentRLAlgorithm.__init__

    def init(self, setup, spec):
        original(self, setup, spec)
        self._sampler = _scripted_sampler(self)

    monkeypatch.setattr(AgentRLAlgorithm, "__init__", init)
    result = run_online(cfg)
    assert result.step == 4 and math.isfinite(result.last_metrics["loss"])
    stored = json.loads((cfg.run_dir / "buffer" / "round-0.json").read_text())
    assert stored["stats"]["episodes"] == 4 and stored["stats"]["answer"] == 0.5
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    by_episode: dict[int, list[dict]] = {}
    for turn in stored["turns"]:
        by_episode.setdefault(turn["episode"], []).append(turn)
        reply = tokenizer.decode(turn["reply_ids"])
        assert "Observation:" not in reply  # tool results are never a trained token
        assert len(turn["old_logps"]) == len(turn["reply_ids"])
    for turns in by_episode.values():
        # each later turn's prompt carries the previous tool results
        for later, count in zip(turns[1:], range(1, len(turns))):
            assert tokenizer.decode(later["prompt_ids"]).count("Observation:") == count
        advantages = {t["advantage"] for t in turns}
        assert len(advantages) == 1  # every turn of an episode shares its advantage
    signs = sorted(turns[0]["advantage"] > 0 for turns in by_episode.values())
    assert signs == [False, False, True, True]  # the right answer of each pair is ahead
    rows = read_metrics(cfg.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/answer" in r] == [0, 2, 4]
    assert all(math.isfinite(r["kl"]) for r in rows if "kl" in r)
    evaluation = json.loads((cfg.run_dir / "agent_eval.json").read_text())
    assert len(evaluation["answers"]) == 2 and 0 <= evaluation["answer"] <= 1
    assert (cfg.run_dir / "final").is_dir()
