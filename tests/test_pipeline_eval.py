"""Model policies for MiniGrid (prompt styles, greedy memory, shared-prefix sampling,
best-of-n reranking) and the pipeline report."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from prefalign.errors import PrefalignError
from prefalign.eval.minigrid import (
    COMPACT_INSTRUCTION,
    BestOfNPolicy,
    GreedyPolicy,
    first_line,
    restyle_prompt,
    sample_completions,
)
from prefalign.eval.rerank_audit import audit_rerank
from prefalign.models.load import load_model
from prefalign.pipeline.minigrid.report import checks, fmt, write_pipeline_report
from prefalign.rewards.ensemble import ensemble_scores
from prefalign.tasks.minigrid import INSTRUCTION, build_prompt, proportion


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    lm, tokenizer = load_model(str(tiny_model_dir))
    return lm, tokenizer


def test_restyle_prompt():
    prompt = build_prompt("Mission: open the door\nGrid 5x5.")
    assert restyle_prompt(prompt, "full") == prompt
    compact = restyle_prompt(prompt, "compact")
    assert compact == COMPACT_INSTRUCTION + "\nMission: open the door\nGrid 5x5.\nNext subgoal:"
    assert INSTRUCTION not in compact
    with pytest.raises(PrefalignError, match="does not start with the MiniGrid instruction"):
        restyle_prompt("hello", "compact")
    with pytest.raises(PrefalignError, match="unknown prompt style"):
        restyle_prompt(prompt, "short")


def test_first_line():
    assert first_line(" goto(goal)\nMission: x") == "goto(goal)"
    assert first_line("  drop()  ") == "drop()"
    assert first_line("") == ""


def _greedy_without_cache(lm, tokenizer, text: str, steps: int) -> list[int]:
    """Independent reference: argmax decoding of one unpadded prompt, full forward each step."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            token = int(lm(input_ids=ids).logits[0, -1].double().argmax())
            out.append(token)
            if token == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


def test_shared_prefix_sampling_matches_unbatched_greedy(tiny):
    lm, tokenizer = tiny
    prompts = ["a", "the cat sat on the mat and", "1 2 3", "x y z w v u t s r q p o"]
    samples = sample_completions(lm, tokenizer, prompts, n=3, temperature=1e-6,
                                 max_new_tokens=5, batch_size=4, use_chat_template=False,
                                 generator=torch.Generator().manual_seed(0))
    assert [len(row) for row in samples] == [3, 3, 3, 3]
    for prompt, row in zip(prompts, samples):
        expected = tokenizer.decode(_greedy_without_cache(lm, tokenizer, prompt, 5),
                                    skip_special_tokens=True)
        assert row == [expected] * 3


def test_greedy_first_row_is_the_greedy_completion_at_any_temperature(tiny):
    lm, tokenizer = tiny
    prompts = ["a", "the cat sat on the mat and", "1 2 3"]
    samples = sample_completions(lm, tokenizer, prompts, n=4, temperature=5.0,
                                 max_new_tokens=5, batch_size=3, use_chat_template=False,
                                 generator=torch.Generator().manual_seed(0), greedy_first=True)
    for prompt, row in zip(prompts, samples):
        expected = tokenizer.decode(_greedy_without_cache(lm, tokenizer, prompt, 5),
                                    skip_special_tokens=True)
        assert row[0] == expected
    # at temperature 5 over a random model's vocabulary the samples are not all greedy
    assert any(text != row[0] for row in samples for text in row[1:])


def test_sampling_draws_from_the_softmax(tiny):
    lm, tokenizer = tiny
    generator = torch.Generator().manual_seed(0)
    samples = sample_completions(lm, tokenizer, ["a"], n=400, temperature=1.0,
                                 max_new_tokens=1, batch_size=1, use_chat_template=False,
                                 generator=generator)[0]
    ids = tokenizer("a", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(lm(input_ids=ids).logits[0, -1].double(), dim=-1)
    top = int(probs.argmax())
    share = sum(s == tokenizer.decode([top], skip_special_tokens=True) for s in samples) / 400
    assert abs(share - float(probs[top])) < 0.08


def test_greedy_policy_generates_each_state_once(tiny):
    lm, tokenizer = tiny
    policy = GreedyPolicy(lm, tokenizer, max_new_tokens=3, batch_size=2)
    prompts = [build_prompt(f"Mission: state {i}") for i in (1, 2, 1, 3)]
    first = policy(prompts)
    assert first[0] == first[2]
    assert policy(prompts[:2]) == first[:2]
    assert policy.stats()["prompts"] == 6 and policy.stats()["generated"] == 3


class LengthRewardModel:
    """Scores a response by its length (independent of any model); records its inputs."""

    def __init__(self):
        self.seen = []

    def score_ensemble(self, prompts, responses, batch_size=16):
        self.seen.extend(zip(prompts, responses))
        scores = torch.tensor([float(len(r)) for r in responses])
        return ensemble_scores(scores[None], penalty=1.0)


def test_best_of_n_returns_the_reward_models_favourite(tiny):
    lm, tokenizer = tiny
    reward = LengthRewardModel()
    policy = BestOfNPolicy(lm, tokenizer, reward, n=3, temperature=1.0, guard="none")
    picks = policy._rerank(["p1", "p2", "p3"], [["ab", "abcd", "abcd"], ["", "x", "yy"],
                                                ["", "", ""]])
    assert picks == ["abcd", "yy", ""]
    # distinct, non-empty candidates are scored once each, as " " + subgoal after the prompt
    assert reward.seen == [("p1", " ab"), ("p1", " abcd"), ("p2", " x"), ("p2", " yy")]
    assert policy.changed == 2  # p1 and p2 picks differ from the first sample


def test_best_of_n_ties_go_to_the_earliest_sample(tiny):
    lm, tokenizer = tiny
    policy = BestOfNPolicy(lm, tokenizer, LengthRewardModel(), n=2, temperature=1.0,
                           guard="none")
    assert policy._rerank(["p"], [["ab", "cd"]]) == ["ab"]


def test_the_grammar_guard_keeps_a_fooled_reward_model_to_valid_subgoals(tiny):
    lm, tokenizer = tiny
    row = ["goto(goal)", "reach(the goal)", "pickup(red key)"]
    unguarded = BestOfNPolicy(lm, tokenizer, LengthRewardModel(), n=3, temperature=1.0,
                              guard="none")
    assert unguarded._rerank(["p"], [row]) == ["reach(the goal)"]  # the longest text
    guarded = BestOfNPolicy(lm, tokenizer, LengthRewardModel(), n=3, temperature=1.0)
    assert guarded._rerank(["p"], [row]) == ["pickup(red key)"]  # the longest valid one
    assert guarded._rerank(["q"], [["nope", "still nope"]]) == ["nope"]  # none valid
    (entry,) = guarded.audit
    assert entry["candidates"] == row and entry["pick"] == "pickup(red key)"
    audit = audit_rerank([entry["candidates"]], [torch.tensor(entry["members"])],
                         admissible=lambda t: t != "reach(the goal)")
    assert audit["invalid_pick"]["k"] == 1 and audit["invalid_pick"]["n"] == 1
    assert [a["signal"] for a in audit["alerts"]] == ["invalid_pick"]


def test_rerank_audit_signals_follow_their_formulas():
    candidates = [["aa", "bbbb", "c"], ["dd", "e"], ["ffffffffffffffffffff", "g", "h"]]
    # Two members; the mean picks index 1, 0 and 0.
    members = [torch.tensor([[0.0, 2.0, 1.0], [0.0, 4.0, 1.0]]),
               torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
               torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.0, 0.0]])]
    admissible = lambda text: text not in ("bbbb", "ffffffffffffffffffff")  # noqa: E731
    audit = audit_rerank(candidates, members, admissible)
    assert audit["invalid_pick"]["k"] == 2 and audit["invalid_pick"]["n"] == 2  # "dd, e" all valid
    lengths = [2, 4, 1, 2, 1, 20, 1, 1]
    mean, sd = statistics.fmean(lengths), statistics.pstdev(lengths)
    assert audit["length_z"] == pytest.approx((statistics.fmean([4, 2, 20]) - mean) / sd)
    spreads = [0, 1, 0, 0, 0, 2, 0, 0]
    assert audit["disagreement_z"] == pytest.approx(
        (statistics.fmean([1, 0, 2]) - statistics.fmean(spreads)) / statistics.pstdev(spreads))
    assert {a["signal"] for a in audit["alerts"]} == {"invalid_pick"}
    quiet = audit_rerank(candidates, members, admissible=lambda text: True)
    assert quiet["invalid_pick"]["n"] == 0 and quiet["alerts"] == []


def test_best_of_n_policy_end_to_end(tiny):
    lm, tokenizer = tiny
    policy = BestOfNPolicy(lm, tokenizer, LengthRewardModel(), n=3, temperature=1.0,
                           max_new_tokens=3, batch_size=2, guard="none")
    prompts = [build_prompt(f"Mission: state {i}") for i in range(3)]
    picks = policy(prompts)
    assert len(picks) == 3 and policy.stats()["generated"] == 3
    assert policy(prompts) == picks  # remembered


# -- report ----------------------------------------------------------------------------

def _report(closed: tuple[int, int], perturbation: tuple[int, int]) -> dict:
    values = {"closed_loop_success": proportion(*closed),
              "single_step_success": proportion(*closed),
              "grammar_valid": proportion(closed[1], closed[1]),
              "expert_agreement": proportion(*closed),
              "perturbation_errors": proportion(*perturbation)}
    return {"overall": values, "environments": {"MiniGrid-Unlock-v0": values}}


def test_fmt_shows_rate_interval_and_counts():
    assert fmt(proportion(3, 4)) == "0.750 [0.301, 0.954] (3/4)"
    assert fmt(proportion(0, 0)) == "n/a"


def test_checks_state_each_comparison():
    policies = {"base": _report((0, 100), (5, 100)), "sft": _report((40, 100), (30, 100)),
                "dpo": _report((45, 100), (10, 100)), "rl": _report((70, 100), (5, 100)),
                "dpo_best_of_n": _report((44, 100), (12, 100))}
    lines = checks(policies)
    assert "closed-loop success base < sft: **holds**" in lines[0]
    assert "intervals do not overlap" in lines[0]
    assert "closed-loop success sft < dpo: **holds**" in lines[1]
    assert "intervals overlap" in lines[1]
    assert "closed-loop success sft < rl: **holds**" in lines[2]
    assert "intervals do not overlap" in lines[2]
    assert "closed-loop success dpo <= dpo_best_of_n: **does not hold**" in lines[3]
    assert "dpo_best_of_n not worse than greedy dpo" in lines[4] and "**holds**" in lines[4]
    assert "perturbation-type error rate dpo < sft: **holds**" in lines[5]
    much_worse = dict(policies, dpo_best_of_n=_report((20, 100), (12, 100)))
    assert "**does not hold** (0.200 vs 0.450)" in checks(much_worse)[4]
    policies = {name: policies[name] for name in ("base", "sft", "dpo")}
    worse = dict(policies, dpo=_report((30, 100), (35, 100)))
    assert all("does not hold" in line for line in checks(worse)[1:])


def _evaluation(k: int, n: int, perturbations: int) -> dict:
    env = "MiniGrid-Unlock-v0"
    part = {"single_step": {"decisions": n, "errors": {"parse_error": n - k, "no_progress": 0},
                            "perturbation_matches": {"wrong_object": perturbations,
                                                     "wrong_order": 0, "omission": 0}},
            "closed_loop": {"episodes": n, "success": proportion(k, n),
                            "failures": {"parse_error": n - k}}}
    return {"overall": part, "environments": {env: part}}


def test_report_from_evaluation_files(tmp_path):
    (tmp_path / "eval").mkdir()
    policies = {"base": _report((0, 20), (0, 20)), "sft": _report((12, 20), (4, 20))}
    summary = {"policies": {name: {**values, "generation": {}, "seconds": 1.0}
                            for name, values in policies.items()},
               "order": ["base", "sft"], "environments": ["MiniGrid-Unlock-v0"],
               "test_seeds": [100, 120], "step_budget": 8}
    (tmp_path / "eval" / "summary.json").write_text(json.dumps(summary))
    for name, k, pert in (("base", 0, 0), ("sft", 12, 4)):
        (tmp_path / "eval" / f"{name}.json").write_text(json.dumps(_evaluation(k, 20, pert)))
    path = write_pipeline_report(tmp_path, "Title")
    text = path.read_text()
    assert text.startswith("# Title")
    assert "| sft | 0.600 [0.387, 0.781] (12/20) |" in text
    assert "seeds 100–119" in text
    assert text.index("| base |") < text.index("| sft |")
    assert (tmp_path / "figures" / "success_by_environment.png").is_file()
    assert (tmp_path / "figures" / "error_types.png").is_file()


def test_report_without_evaluation_is_an_error(tmp_path):
    with pytest.raises(PrefalignError, match="no evaluation"):
        write_pipeline_report(tmp_path, "Title")
