"""The harder MiniGrid benchmark: new environments, scarce and noisy demonstrations,
on-policy pairs judged by the executor, multi-turn rollouts, and held-out data that is
content-disjoint from training by construction."""

from __future__ import annotations

import json
import random

import pytest

from prefalign.errors import DataError
from prefalign.pipeline.minigrid.data import build_minigrid_data, noisy_traces
from prefalign.tasks.minigrid import (
    ENVIRONMENTS,
    PERTURBATION_TYPES,
    Decision,
    build_prompt,
    describe_state,
    execute,
    expert_rollout,
    expert_subgoal,
    generate_traces,
    make_episode,
    parse_subgoal,
    preference_pairs,
)
from prefalign.tasks.minigrid.rollout import on_policy_pairs, rollout_episodes

NEW_ENVIRONMENTS = ["MiniGrid-BlockedUnlockPickup-v0", "MiniGrid-MultiRoom-N2-S4-v0",
                    "MiniGrid-MultiRoom-N4-S5-v1", "BabyAI-OpenDoorsOrderN2-v0",
                    "BabyAI-OpenDoorsOrderN4-v0"]


@pytest.mark.parametrize("env_id", NEW_ENVIRONMENTS)
def test_the_expert_solves_200_seeds_of_every_new_environment(env_id):
    solved = 0
    for seed in range(200):
        episode = make_episode(env_id, seed)
        for _ in range(8):
            if episode.mission_accomplished:
                break
            assert execute(episode, expert_subgoal(episode)).success, (env_id, seed)
        solved += episode.mission_accomplished and episode.reward > 0
    assert solved == 200


def test_blocked_door_plan_moves_the_ball_out_of_the_doorway():
    rollout = expert_rollout("MiniGrid-BlockedUnlockPickup-v0", 177)
    assert [item.subgoal.split("(")[0] for item in rollout] == \
        ["pickup", "drop", "pickup", "open", "drop", "pickup"]
    assert rollout[0].subgoal.endswith("ball)")


def test_open_doors_order_follows_after_you():
    seen = set()
    for seed in range(40):
        episode = make_episode("BabyAI-OpenDoorsOrderN2-v0", seed)
        mission = episode.env.mission
        plan = [item.subgoal for item in expert_rollout("BabyAI-OpenDoorsOrderN2-v0", seed)]
        colours = [word for word in mission.replace(",", "").split() if word in
                   ("red", "green", "blue", "purple", "yellow", "grey")]
        if " after you " in mission:
            seen.add("after")
            assert plan == [f"open({colours[1]} door)", f"open({colours[0]} door)"]
        elif ", then " in mission:
            seen.add("then")
            assert plan == [f"open({colours[0]} door)", f"open({colours[1]} door)"]
    assert seen == {"after", "then"}


def test_opening_the_doors_in_the_wrong_order_fails_the_contract():
    for seed in range(40):
        rollout = expert_rollout("BabyAI-OpenDoorsOrderN2-v0", seed)
        if len(rollout) == 2:
            episode = make_episode("BabyAI-OpenDoorsOrderN2-v0", seed)
            result = execute(episode, rollout[1].subgoal)
            assert not result.success and result.failure.value == "NO_PROGRESS"
            return
    pytest.fail("no two-door mission in 40 seeds")


def _replay(env_id, seed, completed):
    episode = make_episode(env_id, seed)
    for subgoal in completed:
        assert execute(episode, subgoal).success
    return episode


def test_every_perturbation_fails_the_execution_contract():
    pairs = preference_pairs(NEW_ENVIRONMENTS + ["MiniGrid-DoorKey-8x8-v0"], range(6))
    kinds = {pair["metadata"]["perturbation"] for pair in pairs}
    assert kinds == set(PERTURBATION_TYPES)
    for pair in pairs:
        meta = pair["metadata"]
        episode = make_episode(meta["env_id"], meta["seed"])
        for _ in range(meta["step"]):
            execute(episode, expert_subgoal(episode))
        assert pair["prompt"] == build_prompt(describe_state(episode))
        result = execute(episode, pair["rejected"].strip())
        assert not result.success and result.failure.value == meta["rejected_failure"]


class ScriptedSampler:
    """Proposals drawn, per state, from the expert's subgoal, perturbations and junk."""

    JUNK = ["get to the goal", "reach(goal)", "open(red door", "pickup(goal)", ""]

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.calls: list[list[str]] = []

    def __call__(self, prompts, k):
        rows = []
        for prompt in prompts:
            state = self.states[prompt]
            decision = Decision(state)
            wrong = [c for p in PERTURBATION_TYPES for c in decision.candidates(p)] + self.JUNK
            rows.append([decision.chosen if self.rng.random() < 0.4 else self.rng.choice(wrong)
                         for _ in range(k)])
        self.calls.append(prompts)
        return rows


def _scripted_rollouts(episodes, k, budget, seed=0):
    sampler = ScriptedSampler(seed)
    # The sampler needs the live state behind each prompt: mirror the rollout's episodes.
    mirrors = {key: make_episode(*key) for key in episodes}
    sampler.states = {}

    def sample(prompts, k):
        sampler.states = {build_prompt(describe_state(ep)): ep for ep in mirrors.values()}
        rows = sampler(prompts, k)
        for prompt, row in zip(prompts, rows):
            episode = sampler.states[prompt]
            passed = [p for p in row if execute(episode.copy(), p).success]
            execute(episode, passed[0] if passed else row[0])
        return rows

    return rollout_episodes(sample, episodes, k=k, step_budget=budget)


def test_every_on_policy_negative_fails_and_every_chosen_passes():
    episodes = [(env, seed) for env in NEW_ENVIRONMENTS for seed in range(4)]
    rollouts = _scripted_rollouts(episodes, k=4, budget=8)
    pairs = on_policy_pairs(rollouts, max_per_state=3)
    assert len(pairs) >= 20
    junk = 0
    for pair in pairs:
        meta = pair["metadata"]
        assert meta["source"] == "on_policy"
        state = _replay(meta["env_id"], meta["seed"], meta["completed"])
        assert pair["prompt"] == build_prompt(describe_state(state))
        assert execute(state.copy(), pair["chosen"].strip()).success
        result = execute(state.copy(), pair["rejected"].strip())
        assert not result.success and result.failure.value == meta["rejected_failure"]
        junk += meta["rejected_failure"] == "UNPARSEABLE"
    assert junk > 0  # malformed and invented subgoals are among the negatives


def test_multi_turn_rollout_returns_match_a_hand_stepped_episode():
    env_id, seed = "MiniGrid-BlockedUnlockPickup-v0", 3
    expert = [item.subgoal for item in expert_rollout(env_id, seed)]
    # Turn 0: junk, then the expert's step; turn 1: a wrong one only (the episode ends).
    script = [["reach(goal)", expert[0]], [expert[2], expert[2]]]

    def sample(prompts, k):
        return [script.pop(0)]

    (rollout,) = rollout_episodes(sample, [(env_id, seed)], k=2, step_budget=8)
    # By hand: the same subgoals executed in a fresh episode.
    episode = make_episode(env_id, seed)
    assert not execute(episode.copy(), "reach(goal)").success
    first = execute(episode, expert[0])
    second = execute(episode, expert[2])
    assert first.success and not second.success
    assert [turn.rewards for turn in rollout.turns] == [[0.0, 1.0], [0.0, 0.0]]
    assert [turn.taken for turn in rollout.turns] == [1, 0]
    assert rollout.subgoal_return == 1.0 and rollout.episode_return == 0.0
    assert rollout.turns[1].failures == [second.failure.value] * 2

    # A whole expert episode: every subgoal rewarded, the mission accomplished.
    plan = list(expert)

    def expert_sample(prompts, k):
        return [[plan.pop(0)] * k]

    (solved,) = rollout_episodes(expert_sample, [(env_id, seed)], k=3, step_budget=8)
    hand = make_episode(env_id, seed)
    for subgoal in expert:
        assert execute(hand, subgoal).success
    assert hand.mission_accomplished
    assert solved.accomplished and solved.episode_return == 1.0
    assert solved.subgoal_return == len(expert) == len(solved.turns)


def test_step_budget_ends_a_rollout():
    env_id, seed = "MiniGrid-MultiRoom-N4-S5-v1", 0
    expert = [item.subgoal for item in expert_rollout(env_id, seed)]

    turns = iter(expert)

    def sample(prompts, k):
        return [[next(turns)] * k]

    (rollout,) = rollout_episodes(sample, [(env_id, seed)], k=1, step_budget=2)
    assert len(rollout.turns) == 2 and not rollout.accomplished
    assert rollout.subgoal_return == 2.0 and rollout.episode_return == 0.0


def test_noisy_demonstrations_err_at_the_stated_rate_and_only_there():
    envs = ["MiniGrid-DoorKey-6x6-v0", "BabyAI-OpenDoorsOrderN2-v0",
            "MiniGrid-MultiRoom-N2-S4-v0"]
    clean = noisy_traces(envs, range(60), 0.0)
    noisy = noisy_traces(envs, range(60), 0.3)
    assert len(clean) == len(noisy)
    changed = [n for c, n in zip(clean, noisy) if c["expert_subgoal"] != n["expert_subgoal"]]
    assert all(n.get("noisy") for n in changed)
    assert sum(bool(n.get("noisy")) for n in noisy) == len(changed)
    rate = len(changed) / len(noisy)
    assert 0.2 < rate < 0.4, rate
    for record in changed:
        parse_subgoal(record["expert_subgoal"])  # a plausible but wrong subgoal
    assert noisy == noisy_traces(envs, range(60), 0.3)  # seeded


def test_held_out_environments_are_content_disjoint_from_training(tmp_path):
    from prefalign.pipeline.minigrid.config import MinigridDataConfig

    cfg = MinigridDataConfig(
        environments=["MiniGrid-DoorKey-6x6-v0", "MiniGrid-MultiRoom-N2-S4-v0",
                      "BabyAI-OpenDoorsOrderN2-v0"],
        test_environments=["MiniGrid-DoorKey-8x8-v0", "MiniGrid-MultiRoom-N4-S5-v1",
                           "BabyAI-OpenDoorsOrderN4-v0"],
        train_seeds=20, demo_episodes=5, validation_seeds=2, test_seeds=10, demo_noise=0.2)
    summary = build_minigrid_data(cfg, tmp_path, seed=0)
    assert summary["counts"]["sft_train"] > 0
    assert {r["metadata"]["seed"] for r in map(json.loads, (tmp_path / "sft_train.jsonl")
                                               .read_text().splitlines())} <= set(range(5))
    held_out = set(json.loads((tmp_path / "held_out_contexts.json").read_text()))
    test_contexts = {item.context for env in cfg.test_environments for seed in range(22, 32)
                     for item in expert_rollout(env, seed)}
    assert test_contexts <= held_out
    train_contexts = set()
    for name in ("sft_train.jsonl", "pairs_train.jsonl"):
        for line in (tmp_path / name).read_text().splitlines():
            prompt = json.loads(line)["prompt"]
            train_contexts.add(prompt.split("\n", 1)[1].rsplit("\n", 1)[0])
    assert train_contexts and not train_contexts & held_out
    # Disjoint by construction: no held-out state has a training state's grid size and
    # number of doors (larger grids, more doors).
    def signature(context):
        lines = context.split("\n")
        return lines[1].split(".")[0], lines[2].count(" door ")

    trained = {signature(context) for context in train_contexts}
    assert not any(signature(context) in trained for context in test_contexts)


def _rollout(rewards, accomplished):
    from prefalign.tasks.minigrid.rollout import EpisodeRollout, Turn

    turns = [Turn(t, "", [], ["x", "y"], [0.0, r], [None, None], 1)
             for t, r in enumerate(rewards)]
    return EpisodeRollout("env", 0, turns, accomplished)


def test_multi_turn_grpo_advantages_are_return_to_go_minus_the_turns_group_mean():
    from prefalign.pipeline.minigrid.episode_rl import turn_advantages

    group = [_rollout([1, 1], True), _rollout([1, 0], False), _rollout([0], False)]
    bonus = 1.0
    # Returns-to-go written out: [1+1+b, 1+b], [1+0, 0], [0].
    expected_turn0 = [3.0 - 4 / 3, 1.0 - 4 / 3, 0.0 - 4 / 3]
    expected_turn1 = [2.0 - 1.0, 0.0 - 1.0]
    advantages = turn_advantages(group, bonus)
    assert [row[0] for row in advantages] == pytest.approx(expected_turn0)
    assert [row[1] for row in advantages[:2]] == pytest.approx(expected_turn1)
    assert len(advantages[2]) == 1
    # Equal returns give no signal.
    assert turn_advantages([_rollout([1], True), _rollout([1], True)], 1.0) == [[0.0], [0.0]]


def test_learning_curve_reads_runs_and_draws_every_policy(tmp_path):
    import yaml

    from prefalign.pipeline.minigrid.learning_curve import main
    from prefalign.tasks.minigrid import proportion

    runs = []
    for demos, (sft, dpo) in {8: (3, 9), 2: (1, 4)}.items():
        run = tmp_path / f"demos{demos}"
        (run / "eval").mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"data": {"demo_episodes": demos,
                                                                   "train_seeds": 40}}))
        policies = {name: {"overall": {"closed_loop_success": proportion(k, 20)}}
                    for name, k in (("sft", sft), ("dpo", dpo))}
        (run / "eval" / "summary.json").write_text(json.dumps({"policies": policies}))
        runs.append(run)
    out = tmp_path / "curve.png"
    main([*map(str, runs), "--out", str(out)])
    points = json.loads(out.with_suffix(".json").read_text())
    assert [p["demos"] for p in points["sft"]] == [2, 8]
    assert [p["k"] for p in points["dpo"]] == [4, 9]
    assert out.stat().st_size > 1000
    with pytest.raises(Exception, match="not a finished MiniGrid pipeline run"):
        main([str(tmp_path), "--out", str(out)])


def test_episode_grpo_updates_follow_the_advantage_and_resume_exactly(tmp_path, tiny_model_dir):
    import torch

    from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
    from prefalign.pipeline.minigrid.episode_rl import EpisodeGRPO
    from prefalign.rollout.batch import pack_groups

    cfg = MinigridPipelineConfig.model_validate({
        "output_dir": str(tmp_path), "model": str(tiny_model_dir),
        "data": {"environments": ["MiniGrid-DoorKey-6x6-v0"], "train_seeds": 4,
                 "validation_seeds": 1, "test_seeds": 1},
        "rl": {"lr": 5e-3, "batch_size": 2, "kl_coef": 0.0}})
    root = tmp_path / "run"
    (root / "data").mkdir(parents=True)
    (root / "data" / "held_out_contexts.json").write_text("[]")
    trainer = EpisodeGRPO(cfg, tiny_model_dir, root / "rl")
    tok = trainer.tokenizer
    prompts = [tok("state one", add_special_tokens=False)["input_ids"]] * 2
    completions = [tok(" goto(goal)", add_special_tokens=False)["input_ids"],
                   tok(" drop()", add_special_tokens=False)["input_ids"]]

    def logps():
        batch = pack_groups(prompts, completions, tok.pad_token_id)
        with torch.no_grad():
            values, _ = trainer.policy(batch["prompt_ids"], batch["prompt_mask"],
                                       batch["completion_ids"], batch["completion_mask"])
        return (values * batch["completion_mask"]).sum(-1)

    before = logps()
    for _ in range(3):
        trainer._update(prompts, completions, [1.0, -1.0])
    after = logps()
    assert after[0] > before[0] and after[1] < before[1]

    trainer.round = 1
    trainer.log = [{"round": 1, "kl": 0.0}]
    trainer._save_state()
    resumed = EpisodeGRPO(cfg, tiny_model_dir, root / "rl")
    resumed.restore()
    assert resumed.round == 1
    assert torch.allclose(logps(), after)  # the original trainer's weights, unchanged
    trainer_weights = {n: p for n, p in trainer.lm.named_parameters() if p.requires_grad}
    for name, param in resumed.lm.named_parameters():
        if param.requires_grad:
            assert torch.equal(param, trainer_weights[name])


def test_held_out_compositions_never_reach_training(tmp_path):
    from prefalign.pipeline.minigrid.config import MinigridDataConfig
    from prefalign.pipeline.minigrid.episode_split import episode_split
    from prefalign.tasks.minigrid.compositions import composition, is_held_out

    envs = ["MiniGrid-BlockedUnlockPickup-v0", "BabyAI-GoToLocalS8N4-v0",
            "BabyAI-OpenDoorsOrderN4-v0", "MiniGrid-UnlockPickup-v0"]
    cfg = MinigridDataConfig(environments=envs, train_seeds=30, demo_episodes=6,
                             validation_seeds=2, test_seeds=8, held_out_compositions=0.3)
    split = episode_split(cfg)
    # DoorKey's door is always yellow: one composition, held out whole here — refused.
    doorkey = cfg.model_copy(update={"environments": ["MiniGrid-DoorKey-8x8-v0"]})
    with pytest.raises(DataError, match="every training seed has a held-out composition"):
        episode_split(doorkey)
    seen, tested = set(), set()
    for env in envs:
        assert len(split["test"][env]) == 8
        assert split["demo"][env] == split["train"][env][:6]
        for part, store in (("train", seen), ("validation", seen), ("test", tested)):
            for seed in split[part][env]:
                episode = make_episode(env, seed)
                store.add((episode.family, composition(episode)))
    assert tested and not tested & seen
    # The rule, written out: sha256("family/composition") mod 10^6 < share * 10^6.
    import hashlib
    for family, key in tested:
        digest = hashlib.sha256(f"{family}/{key}".encode()).digest()
        assert int.from_bytes(digest[:8], "big") % 1_000_000 < 300_000
        assert is_held_out(family, key, 0.3)
    summary = build_minigrid_data(cfg, tmp_path, seed=0)
    assert summary["episodes"]["test"] == split["test"]
    missions = {json.loads(line)["prompt"].split("\n")[1]
                for name in ("sft_train.jsonl", "pairs_train.jsonl")
                for line in (tmp_path / name).read_text().splitlines()}
    # BabyAI missions name their composition: none of the test missions is trained on.
    test_missions = {describe_state(make_episode(env, seed)).split("\n")[0]
                     for env in envs if env.startswith("BabyAI") for seed in split["test"][env]}
    assert test_missions and not missions & test_missions


def test_sequence_compositions_name_the_order():
    from prefalign.tasks.minigrid.compositions import composition

    keys = {composition(make_episode("BabyAI-OpenDoorsOrderN4-v0", seed)) for seed in range(30)}
    assert any(key.startswith("after(open ") for key in keys)
    assert any(key.startswith("before(open ") for key in keys)
    assert any(key.startswith("open ") for key in keys)


# -- the grounded guard of best-of-n ---------------------------------------------------

GROUNDING_STATE = ("Mission: pick up the grey box\n"
                   "Grid 11x6. Agent at (4,4) facing west, carrying red key.\n"
                   "Objects: red door (5,1) open; grey box (9,4); red door (7,2) closed; "
                   "goal (3,3).\nCompleted: none.\nNext subgoal:")


@pytest.mark.parametrize("subgoal, expected", [
    ("drop()", True), ("open(red door)", True), ("goto(goal)", True),
    ("goto(grey box)", True), ("pickup(grey box)", False), ("goto(yellow box)", False),
    ("open(blue door)", False), ("reach(goal)", False), ("", False),
])
def test_grounded_reads_objects_doors_and_hands_from_the_state_text(subgoal, expected):
    from prefalign.tasks.minigrid.grounding import grounded

    assert grounded(subgoal, GROUNDING_STATE) is expected


def test_grounded_refuses_a_drop_with_empty_hands_and_an_open_door_to_open():
    from prefalign.tasks.minigrid.grounding import grounded

    state = GROUNDING_STATE.replace("carrying red key", "carrying nothing").replace(
        "red door (7,2) closed", "blue door (7,2) open")
    assert not grounded("drop()", state)
    assert not grounded("open(red door)", state) and not grounded("open(blue door)", state)
    assert grounded("pickup(grey box)", state) and not grounded("goto(goal)", state.replace(
        "; goal (3,3)", ""))


def test_every_expert_subgoal_is_grounded():
    from prefalign.tasks.minigrid.grounding import grounded

    traces = generate_traces(list(ENVIRONMENTS), range(12))
    assert traces
    assert all(grounded(t["expert_subgoal"], t["context"]) for t in traces)
