"""MiniGrid subgoal domain: grammar, state text, executor contract, expert, data, metrics."""

from __future__ import annotations

import json
import math
import re
from collections import deque

import pytest

from prefalign.errors import PrefalignError
from prefalign.intervals import wilson_interval
from prefalign.tasks.minigrid import (
    ENVIRONMENTS,
    PERTURBATION_TYPES,
    Decision,
    FailureType,
    NoExpertSubgoal,
    SplitLeakageError,
    Subgoal,
    SubgoalParseError,
    UnknownEnvironmentError,
    build_prompt,
    check_split_leakage,
    describe_state,
    evaluate_policy,
    execute,
    expert_plan,
    expert_rollout,
    expert_subgoal,
    format_subgoal,
    generate_traces,
    make_episode,
    parse_subgoal,
    preference_pairs,
    sft_records,
    split_seeds,
)
from prefalign.tasks.minigrid.grammar import COLOURS, OBJECT_TYPES, PICKABLE_TYPES

SEEDS = range(10)


def _cells(episode, kind):
    grid = episode.env.grid
    return [(x, y, grid.get(x, y)) for y in range(grid.height) for x in range(grid.width)
            if grid.get(x, y) is not None and grid.get(x, y).type == kind]


# --- environments -----------------------------------------------------------------------

def test_registry_has_required_environments():
    for env_id in ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-DoorKey-6x6-v0",
                   "MiniGrid-DoorKey-8x8-v0", "MiniGrid-Unlock-v0", "MiniGrid-UnlockPickup-v0"]:
        assert env_id in ENVIRONMENTS
    assert any(env_id.startswith("BabyAI-") for env_id in ENVIRONMENTS)


def test_unknown_environment_lists_valid_ids():
    with pytest.raises(UnknownEnvironmentError) as caught:
        make_episode("MiniGrid-Nope-v0", 0)
    assert isinstance(caught.value, PrefalignError)
    for env_id in ENVIRONMENTS:
        assert env_id in str(caught.value)


def test_episode_is_deterministic_by_seed():
    for env_id in ENVIRONMENTS:
        a, b = make_episode(env_id, 3), make_episode(env_id, 3)
        assert describe_state(a) == describe_state(b)
        assert (a.env.grid.encode() == b.env.grid.encode()).all()
    texts = {describe_state(make_episode("MiniGrid-DoorKey-8x8-v0", s)) for s in range(6)}
    assert len(texts) > 1


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_expert_solves_every_environment(env_id):
    for seed in SEEDS:
        episode = make_episode(env_id, seed)
        for _ in range(8):
            if episode.mission_accomplished:
                break
            before = len(expert_plan(episode))
            result = execute(episode, expert_subgoal(episode))
            assert result.success, (env_id, seed, result)
            assert len(expert_plan(episode)) == before - 1
        assert episode.mission_accomplished and episode.reward > 0, (env_id, seed)
        with pytest.raises(NoExpertSubgoal):
            expert_subgoal(episode)


def test_expert_canonical_sequences():
    doorkey = expert_rollout("MiniGrid-DoorKey-6x6-v0", 0)
    assert [s.subgoal for s in doorkey] == ["pickup(yellow key)", "open(yellow door)", "goto(goal)"]
    episode = make_episode("MiniGrid-UnlockPickup-v0", 0)
    box = _cells(episode, "box")[0][2]
    door = _cells(episode, "door")[0][2]
    steps = [s.subgoal for s in expert_rollout("MiniGrid-UnlockPickup-v0", 0)]
    assert steps == [f"pickup({door.color} key)", f"open({door.color} door)", "drop()",
                     f"pickup({box.color} box)"]
    for seed in SEEDS:
        episode = make_episode("BabyAI-GoToLocalS6N2-v0", seed)
        desc = episode.env.instrs.desc
        assert expert_subgoal(episode) == f"goto({desc.color} {desc.type})"


# --- grammar ----------------------------------------------------------------------------

def _all_subgoals():
    yield Subgoal("drop")
    yield Subgoal("goto", None, "goal")
    for colour in COLOURS:
        for kind in OBJECT_TYPES:
            yield Subgoal("goto", colour, kind)
            if kind in PICKABLE_TYPES:
                yield Subgoal("pickup", colour, kind)
        yield Subgoal("open", colour, "door")


def test_parse_format_roundtrip():
    for subgoal in _all_subgoals():
        text = format_subgoal(subgoal)
        assert parse_subgoal(text) == subgoal
        assert format_subgoal(parse_subgoal(text)) == text
        assert parse_subgoal(f"  {text}\n") == subgoal
    assert format_subgoal(parse_subgoal("goto(yellow key)")) == "goto(yellow key)"


@pytest.mark.parametrize("text, reason", [
    ("grab(yellow key)", "unknown verb"),
    ("Pickup(yellow key)", "unknown verb"),
    ("pickup(pink key)", "unknown colour"),
    ("pickup(Yellow key)", "unknown colour"),
    ("pickup(yellow sword)", "unknown object type"),
    ("pickup(yellow key) now", "extra text"),
    ("pickup(yellow key)open(yellow door)", "extra text"),
    ("pickup(yellow key", "missing ')'"),
    ("pickup yellow key", "no '('"),
    ("drop(yellow key)", "wrong arity"),
    ("pickup()", "wrong arity"),
    ("goto(yellow key, red ball)", "wrong arity"),
    ("goto(yellow)", "colour type"),
    ("pickup(yellow  key)", "colour type"),
    ("goto(green goal)", "goal takes no colour"),
    ("pickup(goal)", "cannot take the goal"),
    ("pickup(yellow door)", "pickup takes"),
    ("open(yellow key)", "open takes a door"),
    ("goto((yellow key))", "nested"),
    ("", "empty"),
])
def test_parser_rejects_malformed(text, reason):
    with pytest.raises(SubgoalParseError) as caught:
        parse_subgoal(text)
    assert reason in caught.value.reason
    assert isinstance(caught.value, PrefalignError)


# --- state description ------------------------------------------------------------------

def test_describe_state_lists_everything():
    episode = make_episode("MiniGrid-DoorKey-8x8-v0", 5)
    text = describe_state(episode)
    env = episode.env
    x, y = (int(v) for v in env.agent_pos)
    heading = ["east", "south", "west", "north"][env.agent_dir]
    assert f"Mission: {env.mission}" in text
    assert "Grid 8x8." in text
    assert f"Agent at ({x},{y}) facing {heading}, carrying nothing." in text
    kx, ky, _ = _cells(episode, "key")[0]
    dx, dy, _ = _cells(episode, "door")[0]
    gx, gy, _ = _cells(episode, "goal")[0]
    assert f"yellow key ({kx},{ky})" in text
    assert f"yellow door ({dx},{dy}) locked" in text
    assert f"goal ({gx},{gy})" in text
    assert text.endswith("Completed: none.")
    execute(episode, "pickup(yellow key)")
    execute(episode, "open(yellow door)")
    text = describe_state(episode)
    assert "carrying yellow key" in text and f"yellow door ({dx},{dy}) open" in text
    assert "Completed: pickup(yellow key), open(yellow door)." in text
    assert describe_state(episode, []).endswith("Completed: none.")


def test_describe_state_is_compact():
    for trace in generate_traces(["MiniGrid-DoorKey-8x8-v0", "BabyAI-GoToLocalS8N4-v0"], SEEDS):
        assert len(re.findall(r"\w+|[^\w\s]", trace["context"])) <= 120


def test_prompt_wraps_context():
    prompt = build_prompt("CONTEXT")
    assert "goto(COLOUR TYPE)" in prompt and "drop()" in prompt
    assert prompt.endswith("CONTEXT\nNext subgoal:")


# --- executor ---------------------------------------------------------------------------

def _reference_shortest(env, start, goal_cells):
    """Independent BFS: fewest turn/forward actions to stand on one of goal_cells."""
    vectors = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    seen = {start: 0}
    queue = deque([start])
    while queue:
        x, y, d = queue.popleft()
        if (x, y) in goal_cells:
            return seen[(x, y, d)]
        nexts = [(x, y, (d + 1) % 4), (x, y, (d + 3) % 4)]
        fx, fy = x + vectors[d][0], y + vectors[d][1]
        cell = env.grid.get(fx, fy)
        if cell is None or (cell.type in ("goal", "door") and cell.can_overlap()):
            nexts.append((fx, fy, d))
        for state in nexts:
            if state not in seen:
                seen[state] = seen[(x, y, d)] + 1
                queue.append(state)
    return None


def test_goto_goal_takes_the_shortest_path():
    for seed in SEEDS:
        episode = make_episode("MiniGrid-DoorKey-8x8-v0", seed)
        assert execute(episode, "pickup(yellow key)").success
        assert execute(episode, "open(yellow door)").success
        env = episode.env
        start = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
        goal = {(x, y) for x, y, _ in _cells(episode, "goal")}
        expected = _reference_shortest(env, start, goal)
        steps_before = env.step_count
        result = execute(episode, "goto(goal)")
        assert result.success and result.steps == expected == env.step_count - steps_before
        assert tuple(int(v) for v in env.agent_pos) in goal


def test_executor_success_postconditions():
    episode = make_episode("MiniGrid-UnlockPickup-v0", 1)
    door_x, door_y, door = _cells(episode, "door")[0]
    result = execute(episode, f"pickup({door.color} key)")
    assert result.success and result.failure is None and result.steps == episode.env.step_count
    assert episode.env.carrying.type == "key" and episode.env.carrying.color == door.color
    assert execute(episode, f"open({door.color} door)").success
    assert door.is_open and not door.is_locked
    assert tuple(int(v) for v in episode.env.front_pos) == (door_x, door_y)
    assert execute(episode, "drop()").success
    assert episode.env.carrying is None
    ax, ay = (int(v) for v in episode.env.agent_pos)
    fx, fy = (int(v) for v in episode.env.front_pos)
    assert abs(fx - ax) + abs(fy - ay) == 1 and episode.env.grid.get(fx, fy).type == "key"
    assert episode.completed == [f"pickup({door.color} key)", f"open({door.color} door)", "drop()"]


def test_executor_failure_types():
    episode = make_episode("MiniGrid-DoorKey-6x6-v0", 2)
    cases = [
        ("jump(yellow key)", FailureType.UNPARSEABLE),
        ("pickup(red key)", FailureType.NO_SUCH_OBJECT),
        ("open(yellow door)", FailureType.PRECONDITION_UNMET),  # locked, no key
        ("drop()", FailureType.PRECONDITION_UNMET),  # nothing carried
        ("goto(goal)", FailureType.UNREACHABLE),  # behind the locked door
        ("open(blue door)", FailureType.NO_SUCH_OBJECT),
    ]
    for text, failure in cases:
        result = execute(episode, text)
        assert (result.success, result.failure, result.steps) == (False, failure, 0), text
        assert result.detail
    assert episode.env.step_count == 0 and episode.completed == []

    assert execute(episode, "pickup(yellow key)").success
    assert execute(episode, "pickup(yellow key)").failure is FailureType.NO_PROGRESS
    assert execute(episode, "goto(yellow key)").failure is FailureType.NO_SUCH_OBJECT  # carried
    assert execute(episode, "open(yellow door)").success
    assert execute(episode, "open(yellow door)").failure is FailureType.NO_PROGRESS
    assert execute(episode, "goto(yellow door)").failure is FailureType.NO_PROGRESS  # faces it
    assert execute(episode, "goto(goal)").success and episode.mission_accomplished
    assert execute(episode, "goto(goal)").failure is FailureType.EPISODE_ENDED


def test_bare_goto_and_backwards_steps_are_no_progress():
    episode = make_episode("MiniGrid-DoorKey-8x8-v0", 4)
    result = execute(episode, "goto(yellow key)")  # pickup includes the walk: no progress
    assert result.failure is FailureType.NO_PROGRESS and result.steps >= 0
    episode = make_episode("MiniGrid-UnlockPickup-v0", 4)
    door = _cells(episode, "door")[0][2]
    assert execute(episode, f"pickup({door.color} key)").success
    result = execute(episode, f"pickup({_cells(episode, 'box')[0][2].color} box)")
    assert result.failure is FailureType.PRECONDITION_UNMET  # hands full
    result = execute(episode, "drop()")  # undoes the pickup
    assert result.failure is FailureType.NO_PROGRESS and result.steps >= 1


def test_babyai_distractor_is_not_progress():
    for seed in SEEDS:
        episode = make_episode("BabyAI-GoToLocalS6N2-v0", seed)
        target = expert_subgoal(episode)
        others = {f"goto({o.color} {o.type})" for _, _, o in
                  _cells(episode, "ball") + _cells(episode, "box") + _cells(episode, "key")}
        for text in sorted(others - {target}):
            result = execute(episode.copy(), text)
            assert not result.success
            assert result.failure in (FailureType.NO_PROGRESS, FailureType.EPISODE_ENDED)


# --- traces, splits, pairs --------------------------------------------------------------

def test_traces_are_whole_solved_episodes():
    env_ids = ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-UnlockPickup-v0"]
    traces = generate_traces(env_ids, range(3))
    assert traces == generate_traces(env_ids, range(3))
    assert set(traces[0]) == {"env_id", "seed", "step", "context", "expert_subgoal"}
    for env_id in env_ids:
        for seed in range(3):
            rows = [t for t in traces if t["env_id"] == env_id and t["seed"] == seed]
            assert [r["step"] for r in rows] == list(range(len(rows)))
            episode = make_episode(env_id, seed)
            for row in rows:  # replaying reproduces every recorded context
                assert describe_state(episode) == row["context"]
                assert execute(episode, row["expert_subgoal"]).success
            assert episode.mission_accomplished
    records = sft_records(traces)
    assert records[0]["prompt"] == build_prompt(traces[0]["context"])
    assert records[0]["completion"] == " " + traces[0]["expert_subgoal"]


def test_seed_splits_are_disjoint_and_leakage_is_caught():
    splits = split_seeds(5, 3, 2, start=10)
    assert list(splits.train) == list(range(10, 15))
    assert list(splits.validation) == [15, 16, 17] and list(splits.test) == [18, 19]
    train = generate_traces(["MiniGrid-DoorKey-5x5-v0"], splits.train)
    test = generate_traces(["MiniGrid-DoorKey-5x5-v0"], splits.test)
    check_split_leakage({"train": train, "test": test})
    leaked = test + [dict(train[0])]
    with pytest.raises(SplitLeakageError, match="seed 10"):
        check_split_leakage({"train": train, "test": leaked})
    pair = {"metadata": {"env_id": "MiniGrid-DoorKey-5x5-v0", "seed": 10}}
    with pytest.raises(SplitLeakageError):
        check_split_leakage({"train": train, "validation": [pair]})
    # the same seed in another environment is another episode
    check_split_leakage({"a": [("MiniGrid-DoorKey-5x5-v0", 1)], "b": [("MiniGrid-Unlock-v0", 1)]})


def _state_at(env_id, seed, step):
    """Rebuild the state of an expert decision by replaying the expert."""
    episode = make_episode(env_id, seed)
    for _ in range(step):
        assert execute(episode, expert_subgoal(episode)).success
    return episode


def test_rejected_subgoals_fail_the_execution_contract():
    pairs = preference_pairs(list(ENVIRONMENTS), range(8))
    assert pairs == preference_pairs(list(ENVIRONMENTS), range(8))
    failed = {p: 0 for p in PERTURBATION_TYPES}
    total = {p: 0 for p in PERTURBATION_TYPES}
    for pair in pairs:
        meta = pair["metadata"]
        chosen, rejected = pair["chosen"].strip(), pair["rejected"].strip()
        assert chosen != rejected
        parse_subgoal(rejected)  # grammatical
        assert pair["prompt"].endswith("Next subgoal:")
        episode = _state_at(meta["env_id"], meta["seed"], meta["step"])
        assert pair["prompt"] == build_prompt(describe_state(episode))
        assert chosen == expert_subgoal(episode) == meta["expert_subgoal"]
        total[meta["perturbation"]] += 1
        failed[meta["perturbation"]] += not execute(episode, rejected).success
    rates = {p: failed[p] / total[p] for p in PERTURBATION_TYPES}
    print("rejected subgoals failing the contract:", rates, total)
    for perturbation in PERTURBATION_TYPES:
        assert total[perturbation] >= 20
        assert rates[perturbation] >= 0.95


def test_perturbation_kinds_on_doorkey():
    pairs = preference_pairs(["MiniGrid-DoorKey-8x8-v0"], [0])
    by_step = {(p["metadata"]["step"], p["metadata"]["perturbation"]): p["rejected"].strip()
               for p in pairs}
    assert by_step[(0, "omission")] == "open(yellow door)"
    assert by_step[(0, "wrong_order")] == "goto(goal)"
    assert by_step[(1, "omission")] == "goto(goal)"
    assert by_step[(1, "wrong_order")] == "pickup(yellow key)"  # repeats a completed step
    assert re.fullmatch(r"pickup\((red|green|blue|purple|grey) key\)", by_step[(0, "wrong_object")])
    assert (2, "omission") not in by_step
    # another task's step: dropping the key where no box waits; walking to the key
    # one should pick up, or to the door one should reach by picking up the key first
    assert by_step[(2, "wrong_action")] == "drop()"
    assert by_step[(0, "wrong_action")] in {"goto(yellow key)", "goto(yellow door)"}


def test_decision_classifies_subgoals_by_perturbation_type():
    episode = _state_at("MiniGrid-DoorKey-8x8-v0", 0, 2)  # key carried, door open
    decision = Decision(episode)
    assert decision.chosen == "goto(goal)"
    assert decision.classify("goto(goal)") is None
    assert decision.classify("drop()") == "wrong_action"
    assert decision.classify("open(yellow door)") == "wrong_order"  # a repeat
    assert decision.classify("goto(yellow door)") == "wrong_object"
    assert decision.classify("goto(purple ball)") == "wrong_object"  # outside the candidates
    first = Decision(make_episode("MiniGrid-DoorKey-8x8-v0", 0))
    assert first.classify("open(yellow door)") == "omission"
    assert first.classify("goto(goal)") == "wrong_order"
    assert first.classify("goto(yellow key)") == "wrong_action"
    assert first.classify("drop()") == "wrong_action"


# --- metrics ----------------------------------------------------------------------------

def _wilson_reference(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = (z / (1 + z * z / n)) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (57, 100), (1, 1)])
def test_wilson_interval_matches_formula(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = _wilson_reference(k, n)
    assert low == pytest.approx(max(0.0, ref_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, ref_high), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _expert_lookup(env_ids, seeds):
    return {build_prompt(t["context"]): t["expert_subgoal"]
            for t in generate_traces(env_ids, seeds)}


def test_evaluate_policy_expert_and_garbage():
    env_ids = ["MiniGrid-DoorKey-5x5-v0", "BabyAI-GoToLocalS6N2-v0"]
    seeds = range(4)
    lookup = _expert_lookup(env_ids, seeds)
    calls = []

    def expert_policy(prompts):
        calls.append(len(prompts))
        return [lookup.get(prompt, "drop()") for prompt in prompts]

    report = evaluate_policy(expert_policy, env_ids, seeds, step_budget=6)
    json.dumps(report)
    assert calls[0] == len(generate_traces(env_ids, seeds))  # single-step prompts in one batch
    doorkey = report["environments"]["MiniGrid-DoorKey-5x5-v0"]
    assert doorkey["single_step"]["decisions"] == 12
    for key in ("grammar_valid", "execution_success", "expert_agreement"):
        assert doorkey["single_step"][key]["rate"] == 1.0
    assert doorkey["closed_loop"]["success"]["k"] == 4
    assert doorkey["closed_loop"]["mean_subgoals"] == 3
    low, _ = _wilson_reference(12, 12)
    assert doorkey["single_step"]["expert_agreement"]["ci95"] == pytest.approx([low, 1.0])
    assert report["overall"]["closed_loop"]["success"]["n"] == 8

    garbage = evaluate_policy(lambda ps: ["I would pick up the key"] * len(ps), env_ids, seeds, 6)
    overall = garbage["overall"]
    assert overall["single_step"]["grammar_valid"]["k"] == 0
    assert overall["single_step"]["errors"]["parse_error"] == overall["single_step"]["decisions"]
    assert overall["closed_loop"]["success"]["k"] == 0
    assert overall["closed_loop"]["failures"]["parse_error"] == 8


def test_evaluate_policy_counts_perturbations_and_budget():
    env_ids = ["MiniGrid-DoorKey-6x6-v0"]
    pairs = preference_pairs(env_ids, range(3), ["omission"])
    omit = {p["prompt"]: p["rejected"] for p in pairs}
    report = evaluate_policy(lambda ps: [omit.get(p, "drop()") for p in ps], env_ids, range(3), 4)
    single = report["overall"]["single_step"]
    assert single["perturbation_matches"]["omission"] == len(pairs) == 6
    assert single["execution_success"]["k"] == 0
    lookup = _expert_lookup(env_ids, range(3))
    short = evaluate_policy(lambda ps: [lookup[p] for p in ps], env_ids, range(3), step_budget=2)
    assert short["overall"]["closed_loop"]["failures"]["budget_exhausted"] == 3
