"""StrategyQA: the yes/no reader, the loader's errors, draft pairs, content-disjoint splits,
the shuffled ablation, integrated gradients, and the pipeline end to end on a tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from prefalign.cli import main
from prefalign.errors import DataError
from prefalign.pipeline import load_pipeline_config, run_pipeline
from prefalign.pipeline.strategyqa.config import StrategyQADataConfig
from prefalign.pipeline.strategyqa.data import split_questions
from prefalign.pipeline.strategyqa.evaluation import ablation_prompts
from prefalign.pipeline.strategyqa.generation import generate_to_file, read_replies
from prefalign.tasks import get_task
from prefalign.tasks.strategyqa import (
    content_key,
    derangement,
    draft_pair,
    flip_answer,
    load_strategyqa,
    rationale,
    read_yes_no,
)
from prefalign.tasks.strategyqa.formats import DRAFT_SEPARATOR

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategyqa"
WORDS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "koi", "lark"]


def question(i: int, answer: bool) -> dict:
    return {"qid": f"q{i}", "question": f"Can a {WORDS[i % 12]} number {i} fly?",
            "answer": answer, "facts": [f"Fact {i} one.", f"Fact {i} two."],
            "decomposition": [f"What is {i}?", "Is #1 big?"]}


def write_rows(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- the yes/no reader -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Yes, but only in winter.", True),
    ("No. Whales are mammals, so yes they breathe air... no wait", False),
    ("Sub-questions: Is it yes? Facts: no one knows.\nSo the answer is yes.", True),
    ("The answer is: No", False),
    ("Answer: \"yes\"", True),
    ("It could be yes or no.", None),
    ("Penguins live in Antarctica.", None),
    ("", None),
    ("I think so, yes.", True),
    ("The statement is false.", False),
    ("no answer is yes", True),
])
def test_read_yes_no_on_tricky_outputs(text, expected):
    assert read_yes_no(text) is expected


def test_verifier_passes_only_the_right_committed_answer():
    verifier = get_task("strategyqa").verifier()
    record = {"answer": False}
    assert verifier.score("No, never.", record) == 1.0
    assert verifier.score("Yes.", record) == 0.0
    assert verifier.score("maybe yes maybe no", record) == 0.0


# -- the loader's errors ---------------------------------------------------------------

@pytest.mark.parametrize("row, field, message", [
    ({"question": "Is it?"}, "answer", "missing"),
    ({"question": "Is it?", "answer": "yes"}, "answer", "expected true or false, got 'yes'"),
    ({"question": "Is it?", "answer": 1}, "answer", "expected true or false, got 1"),
    ({"question": "", "answer": True}, "question", "non-empty"),
    ({"question": "Is it?", "answer": True, "facts": "a fact"}, "facts", "list of strings"),
])
def test_a_bad_row_names_file_line_and_field(tmp_path, row, field, message):
    path = write_rows(tmp_path / "train.jsonl", [question(0, True), row])
    with pytest.raises(DataError) as caught:
        load_strategyqa(path)
    assert caught.value.file == str(path) and caught.value.line == 2
    assert caught.value.field == field and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_pipeline_refuses_a_bad_row_with_one_line_and_a_non_zero_exit(tmp_path, capsys,
                                                                           monkeypatch):
    folder = tmp_path / "sqa"
    write_rows(folder / "train.jsonl", [question(i, i % 2 == 0) for i in range(3)]
               + [{"question": "Is it?", "answer": "no"}])
    write_rows(folder / "dev.jsonl", [question(20, True)])
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"pipeline": "strategyqa", "name": "bad",
                                      "output_dir": str(tmp_path / "runs"),
                                      "data": {"path": str(folder), "sft_questions": 1,
                                               "draft_questions": 1,
                                               "validation_questions": 1}}))
    monkeypatch.setattr(sys, "argv", ["prefalign", "pipeline", str(config)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1
    assert f"{folder / 'train.jsonl'}:4: field 'answer': expected true or false" in err[0]


# -- rationales, flips and pairs -------------------------------------------------------

def test_rationale_holds_the_sub_questions_the_first_facts_and_the_answer():
    text = rationale(question(3, False), max_facts=1)
    assert "What is 3? Is #1 big?" in text and "Fact 3 one." in text
    assert "Fact 3 two." not in text and read_yes_no(text) is False


@pytest.mark.parametrize("text", ["Sub-questions: x\nSo the answer is yes.", "Yes, it can.",
                                  "No: it cannot, the answer is no", "answer: true"])
def test_flip_answer_reverses_what_the_text_answers(text):
    assert read_yes_no(flip_answer(text)) is (not read_yes_no(text))


def test_a_right_draft_is_rejected_flipped_a_wrong_one_as_it_is():
    record = question(1, True)
    right = draft_pair(record, "Sub-questions: a\nSo the answer is yes.")
    wrong = draft_pair(record, "Sub-questions: b\nSo the answer is no.")
    silent = draft_pair(record, "Sub-questions: c")
    for pair in (right, wrong, silent):
        assert read_yes_no(pair["chosen"]) is True
        assert read_yes_no(pair["rejected"]) is False
        assert pair["prompt"].startswith(f"Question: {record['question']}{DRAFT_SEPARATOR}")
    assert right["rejected"].strip() == "Sub-questions: a\nSo the answer is no."
    assert wrong["rejected"].strip() == "Sub-questions: b\nSo the answer is no."
    assert right["metadata"]["draft_correct"] and not wrong["metadata"]["draft_correct"]


# -- splits and ablations --------------------------------------------------------------

def test_no_question_sits_in_two_splits(tmp_path):
    train = [question(i, i % 3 == 0) for i in range(40)]
    train.append({**question(5, True), "question": "can a FOX number 5 fly"})  # a duplicate
    dev = [question(i, True) for i in range(36, 48)]  # 36..39 also in training
    folder = tmp_path / "sqa"
    write_rows(folder / "train.jsonl", train)
    write_rows(folder / "dev.jsonl", dev)
    cfg = StrategyQADataConfig(path=str(folder), sft_questions=20, draft_questions=15,
                               validation_questions=4)
    splits = split_questions(cfg, seed=0)
    keys = {name: {content_key(r) for r in records} for name, records in splits.items()}
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not keys[a] & keys[b], (a, b)
    assert len(splits["sft"]) == 20 and len(splits["draft"]) == 15
    trained = keys["sft"] | keys["draft"] | keys["validation"]
    assert all(content_key(q) not in keys["eval"] for q in dev if content_key(q) in trained)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/strategyqa is absent")
def test_the_real_train_and_dev_splits_are_content_disjoint_after_the_data_stage():
    cfg = StrategyQADataConfig(path=str(SHARED))
    splits = split_questions(cfg, seed=0)
    evaluation = {content_key(r) for r in splits["eval"]}
    for name in ("validation", "sft", "draft"):
        assert not evaluation & {content_key(r) for r in splits[name]}
    assert len(splits["eval"]) > 200


@pytest.mark.parametrize("n", [2, 3, 7, 50, 229])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_derangement_is_a_permutation_without_fixed_points(n, seed):
    perm = derangement(n, seed)
    assert sorted(perm) == list(range(n))
    assert all(perm[i] != i for i in range(n))


def test_the_shuffled_ablation_never_pairs_a_question_with_its_own_draft():
    records = [{**question(i, True), "draft": f"draft number {i} says yes"} for i in range(30)]
    prompts = ablation_prompts(records, seed=3)
    for i, record in enumerate(records):
        assert f"draft number {i} says" in prompts["C"][i]
        assert f"draft number {i} says" not in prompts["C_shuffled"][i]
        assert record["question"] in prompts["C_shuffled"][i]
        assert DRAFT_SEPARATOR not in prompts["C_no_draft"][i]


# -- generation that resumes -----------------------------------------------------------

def test_generation_resumes_and_skips_a_torn_last_line(tmp_path, tiny_model_dir, monkeypatch):
    from prefalign.models.load import load_model
    from prefalign.pipeline.strategyqa import generation

    lm, tokenizer = load_model(str(tiny_model_dir))
    asked: list[str] = []
    real = generation.generate

    def counting(lm, tokenizer, prompts, **kwargs):
        asked.extend(prompts)
        return real(lm, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generation, "generate", counting)
    path = tmp_path / "replies.jsonl"
    items = [(f"id{i}", f"prompt {i}") for i in range(5)]
    first = generate_to_file(lm, tokenizer, items[:3], path, max_new_tokens=3, batch_size=2,
                             use_chat_template=False, label="t")
    with path.open("a") as handle:
        handle.write('{"id": "id3", "te')  # a kill in the middle of a line
    asked.clear()
    second = generate_to_file(lm, tokenizer, items, path, max_new_tokens=3, batch_size=2,
                              use_chat_template=False, label="t")
    assert sorted(asked) == ["prompt 3", "prompt 4"]
    assert {k: second[k] for k in first} == first
    assert set(read_replies(path)) == {k for k, _ in items}


# -- attribution -----------------------------------------------------------------------

def test_integrated_gradients_are_complete_on_a_tiny_model(tiny_model_dir):
    from prefalign.eval.attribution import integrated_gradients
    from prefalign.models.load import load_model

    lm, tokenizer = load_model(str(tiny_model_dir), dtype="float32")
    ids = tokenizer("the cat sat on the mat")["input_ids"]
    attribution = integrated_gradients(lm, ids, target_id=5, steps=256, internal_batch_size=64)
    with torch.no_grad():
        embeds = lm.get_input_embeddings()(torch.tensor([ids]))
        at_input = torch.log_softmax(lm(inputs_embeds=embeds).logits[0, -1].double(), -1)[5]
        at_zero = torch.log_softmax(
            lm(inputs_embeds=torch.zeros_like(embeds)).logits[0, -1].double(), -1)[5]
    difference = float(at_input - at_zero)
    assert abs(float(attribution.tokens.sum()) - difference) < 1e-3 * max(1.0, abs(difference))
    assert attribution.tokens.shape == (len(ids),)
    share = attribution.share(1, 3)
    mass = attribution.tokens.abs()
    assert share == pytest.approx(float(mass[1:3].sum() / mass.sum()))


# -- AdamW settings --------------------------------------------------------------------

def test_adam_betas_and_eps_reach_the_optimizer(tmp_path, tiny_model_dir):
    from prefalign.config import SFTConfig
    from prefalign.stages.sft import run_sft

    data = write_rows(tmp_path / "sft.jsonl", [{"prompt": f"q{i}", "completion": " yes"}
                                               for i in range(8)])
    cfg = SFTConfig(name="s", output_dir=str(tmp_path / "runs"),
                    model={"name": str(tiny_model_dir)},
                    data={"train": str(data), "eval_fraction": 0.0},
                    train={"max_steps": 1, "batch_size": 4, "save_every": 1,
                           "adam_betas": [0.8, 0.98], "adam_eps": 1e-6})
    run_sft(cfg)
    checkpoint = sorted((tmp_path / "runs" / "s" / "checkpoints").glob("step-*"))[-1]
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    group = state["optimizer"]["param_groups"][0]
    assert tuple(group["betas"]) == (0.8, 0.98) and group["eps"] == 1e-6


# -- the pipeline end to end -----------------------------------------------------------

def test_the_pipeline_runs_every_stage_on_a_tiny_model(tmp_path, tiny_model_dir):
    folder = tmp_path / "sqa"
    write_rows(folder / "train.jsonl", [question(i, i % 2 == 0) for i in range(30)])
    write_rows(folder / "dev.jsonl", [question(i, i % 3 == 0) for i in range(100, 110)])
    steps = {"max_steps": 2, "batch_size": 4, "save_every": 0}
    raw = {"pipeline": "strategyqa", "name": "sqa", "output_dir": str(tmp_path / "runs"),
           "model": str(tiny_model_dir), "threads": 1,
           "data": {"path": str(folder), "sft_questions": 12, "draft_questions": 8,
                    "validation_questions": 4},
           "answer_sft": {"train": dict(steps)}, "reasoning_sft": {"train": dict(steps)},
           "drafts": {"max_new_tokens": 6},
           "dpo": {"train": {"batch_size": 4, "save_every": 0},
                   "reference": {"source": "adapter_disabled", "precompute": True},
                   "phases": [{"epochs": 1, "loss": {"name": "dpo", "beta": 0.05}},
                              {"epochs": 1, "loss": {"name": "caldpo", "beta": 0.1}},
                              {"epochs": 1, "loss": {"name": "drdpo", "beta": 0.1},
                               "filter_noisy": 0.25}]},
           "eval": {"max_new_tokens": 6, "batch_size": 8},
           "attribution": {"examples": 2, "steps": 4}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    run_pipeline(load_pipeline_config(config))
    root = tmp_path / "runs" / "sqa"
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert set(summary["rows"]) == {"A", "B", "C", "C_no_draft", "C_shuffled"}
    assert all(row["n"] == 10 for row in summary["rows"].values())
    pairs = [json.loads(line) for line in (root / "drafts" / "pairs_train.jsonl").open()]
    assert len(pairs) == 8 and all(read_yes_no(p["rejected"]) is not read_yes_no(p["chosen"])
                                   for p in pairs)
    attribution = json.loads((root / "attribution" / "summary.json").read_text())
    assert len(attribution["examples"]) == 2
    assert 0.0 <= attribution["after"]["mean_draft_share"] <= 1.0
    report = (root / "report.md").read_text()
    assert "C with another question's draft" in report and "majority class" in report
    assert (root / "figures" / "accuracy.png").is_file()
    assert len(list((root / "dpo").glob("phase-*"))) == 3
    # the self-guided loop: the Phase-C model's own drafts make the new pairs
    redrafts = read_replies(root / "self_guided" / "drafts" / "generated.jsonl")
    rebuilt = [json.loads(line) for line in
               (root / "self_guided" / "drafts" / "pairs_train.jsonl").open()]
    assert len(rebuilt) == 8
    for pair in rebuilt:
        draft = redrafts[pair["metadata"]["qid"]]
        assert DRAFT_SEPARATOR + " ".join(draft.split()) + "\n" in pair["prompt"]
        assert read_yes_no(pair["rejected"]) is (not pair["metadata"]["answer"])
    self_guided = json.loads((root / "self_guided" / "summary.json").read_text())
    assert {row["n"] for row in self_guided["rows"].values()} == {10}
    assert (root / "self_guided" / "final").is_dir() and "## The self-guided loop" in report


# -- clarifying questions by a pairwise judge -------------------------------------------

class _PrefersFewerQuestions:
    """A pairwise judge that prefers the list with fewer question marks, in both orders."""

    name = "fewer"

    def compare(self, prompts, responses_a, responses_b):
        from prefalign.judges.base import PairwiseVerdict

        verdicts = []
        for a, b in zip(responses_a, responses_b):
            p = 0.5 if a.count("?") == b.count("?") else float(a.count("?") < b.count("?"))
            verdicts.append(PairwiseVerdict.from_orders(p, p))
        return verdicts


def test_question_quality_compares_only_replies_that_state_sub_questions(monkeypatch):
    from prefalign.judges import base
    from prefalign.pipeline.strategyqa.question_quality import compare_questions, sub_questions

    monkeypatch.setitem(base.JUDGE_KINDS, "fewer", lambda argument, **_: _PrefersFewerQuestions())
    assert sub_questions("Sub-questions: A? B?\nFacts: x") == "A? B?"
    assert sub_questions("The answer is no.") is None
    phase_c = ["Sub-questions: A?\nSo the answer is no.", "Sub-questions: A? B? C?",
               "no sub-questions here", "Sub-questions: A? B?"]
    phase_b = ["Sub-questions: A? B?", "Sub-questions: A?", "Sub-questions: A?",
               "Sub-questions: C? D?"]
    result = compare_questions("fewer:x", ["q1", "q2", "q3", "q4"], phase_c, phase_b)
    assert result["compared"] == 3 and result["questions"] == 4
    assert (result["c_wins"], result["b_wins"], result["ties"]) == (1, 1, 1)
    assert result["win_rate"] == pytest.approx(0.5)
    assert result["position_flips"] == 0.0


def test_a_strategyqa_folder_is_read_by_the_strategyqa_task_not_gsm8k(tmp_path):
    from prefalign.tasks.sources import load_source, source_task

    folder = tmp_path / "sqa"
    write_rows(folder / "train.jsonl", [question(i, i % 2 == 0) for i in range(4)])
    write_rows(folder / "dev.jsonl", [question(9, True)])
    gsm = write_rows(tmp_path / "gsm" / "train.jsonl",
                     [{"question": "1+1?", "answer": "1+1=2\n#### 2"}]).parent
    assert source_task(str(folder)).name == "strategyqa"
    assert source_task(str(gsm)).name == "gsm8k"
    records = load_source(f"strategyqa:path={folder}&split=train&style=answer", "sft")
    assert [r["completion"] for r in records] == [" yes", " no", " yes", " no"]
    prompts = load_source(str(folder), "prompt")
    assert len(prompts) == 1 and prompts[0]["answer"] is True
