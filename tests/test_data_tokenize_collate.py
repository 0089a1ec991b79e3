"""Chat rendering, prompt masking, truncation, skips, collation, packing, bucketing."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from prefalign.data.collate import (
    collate_packed,
    collate_preference,
    collate_sft,
    collate_unpaired,
    length_grouped_batches,
    pack_sft,
)
from prefalign.data.schema import UnusableRecord
from prefalign.data.tokenize import (
    EMPTY_COMPLETION,
    IDENTICAL_PAIR,
    encode_dataset,
    encode_preference,
    encode_sft,
    encode_unpaired,
    render_prompt,
    token_length_stats,
)
from prefalign.errors import ConfigError
from prefalign.models.tiny import tiny_model, tiny_tokenizer

QUESTION = "What is 12 + 7?"
CHATML_PROMPT = "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- rendering and masking

def test_render_prompt_chat_and_plain(tok):
    assert render_prompt(QUESTION, tok) == CHATML_PROMPT
    assert render_prompt([{"role": "user", "content": QUESTION}], tok) == CHATML_PROMPT
    assert render_prompt(QUESTION, tok, use_chat_template=False) == QUESTION
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    assert render_prompt(QUESTION, plain) == QUESTION


def test_labels_cover_exactly_the_completion_tokens(tok):
    example = encode_sft({"prompt": QUESTION, "completion": "The answer is 19."}, tok)
    completion_text = "The answer is 19.<|im_end|>\n"
    assert example["input_ids"] == ids(tok, CHATML_PROMPT) + ids(tok, completion_text)
    masked = [t for t, label in zip(example["input_ids"], example["labels"]) if label == -100]
    trained = [label for label in example["labels"] if label != -100]
    assert tok.decode(masked) == CHATML_PROMPT
    assert tok.decode(trained) == completion_text
    assert example["labels"][len(masked):] == example["input_ids"][len(masked):]


def test_plain_text_completion_ends_with_eos(tok):
    example = encode_sft({"prompt": "Q: 2+2?", "completion": " 4"}, tok, use_chat_template=False)
    trained = [label for label in example["labels"] if label != -100]
    assert tok.decode(trained) == " 4<|im_end|>"
    assert example["input_ids"][:-len(trained)] == ids(tok, "Q: 2+2?")


def test_messages_record_with_system_prompt(tok):
    record = {"prompt": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "hi"}],
              "completion": [{"role": "assistant", "content": "Sure!"}]}
    example = encode_sft(record, tok)
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n" \
             "<|im_start|>assistant\n"
    n_prompt = example["labels"].count(-100)
    assert tok.decode(example["input_ids"][:n_prompt]) == prompt
    assert tok.decode(example["input_ids"][n_prompt:]) == "Sure!<|im_end|>\n"


def test_template_without_prefix_property_is_a_clear_error(tok):
    broken = copy.deepcopy(tok)
    broken.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                            "{% endfor %}{% if add_generation_prompt %}<reply>{% endif %}")
    with pytest.raises(ConfigError, match="prefix"):
        encode_sft({"prompt": "a", "completion": "b"}, broken)


# ---------------------------------------------------------------- truncation and skips

def test_truncation_keep_end_and_keep_start(tok):
    record = {"prompt": "The quick brown fox jumps over the lazy dog. " + QUESTION,
              "completion": "The answer is 19."}
    full_prompt = ids(tok, render_prompt(record["prompt"], tok))
    completion = ids(tok, "The answer is 19.<|im_end|>\n")
    end = encode_sft(record, tok, max_prompt_length=8)
    assert end["input_ids"] == full_prompt[-8:] + completion
    start = encode_sft(record, tok, max_prompt_length=8, truncation="keep_start")
    assert start["input_ids"] == full_prompt[:8] + completion
    cut = encode_sft(record, tok, max_length=10, max_prompt_length=8)
    assert cut["input_ids"] == full_prompt[-8:] + completion[:2]
    assert cut["labels"] == [-100] * 8 + completion[:2]
    with pytest.raises(ConfigError, match="keep_end"):
        encode_sft(record, tok, truncation="middle")


def test_preference_and_unpaired_encoding(tok):
    record = {"prompt": QUESTION, "chosen": "19", "rejected": "20", "margin": 1.5}
    example = encode_preference(record, tok, max_length=64)
    assert example["prompt_ids"] == ids(tok, CHATML_PROMPT)
    assert example["chosen_ids"] == ids(tok, "19<|im_end|>\n")
    assert example["rejected_ids"] == ids(tok, "20<|im_end|>\n")
    assert example["margin"] == 1.5
    unpaired = encode_unpaired({"prompt": QUESTION, "completion": "19", "label": False}, tok)
    assert unpaired["completion_ids"] == ids(tok, "19<|im_end|>\n") and unpaired["label"] is False


def test_skip_reasons_are_counted_never_encoded(tok):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 4
    records = [
        {"prompt": QUESTION, "chosen": "19", "rejected": "20"},
        {"prompt": QUESTION, "chosen": "19", "rejected": "19"},
        {"prompt": long_prompt, "chosen": "19", "rejected": "20"},
        # identical only after truncation to max_length
        {"prompt": QUESTION, "chosen": "The answer is 19.", "rejected": "The answer is 20."},
    ]
    limit = len(ids(tok, CHATML_PROMPT)) + 3
    examples, report = encode_dataset(records, encode_preference, tokenizer=tok,
                                      max_length=limit)
    assert len(examples) == 1
    assert examples[0]["rejected_ids"] == ids(tok, "20<|im_end|>\n")[:3]
    assert report.counts == {IDENTICAL_PAIR: 2, EMPTY_COMPLETION: 1}
    assert report.first_indices == {IDENTICAL_PAIR: [1, 3], EMPTY_COMPLETION: [2]}
    assert report.skipped == 3 and report.total == 4
    summary = report.summary()
    assert "\n" not in summary and "kept 1 of 4" in summary and "records 1, 3" in summary
    with pytest.raises(UnusableRecord):
        encode_preference(records[1], tok)


def test_token_length_stats_match_direct_tokenisation(tok):
    records = [{"prompt": "hi", "chosen": "Sure!", "rejected": "no"},
               {"prompt": QUESTION, "chosen": "19", "rejected": "The answer is 19."}]
    stats = token_length_stats(records, "preference", tok)
    prompts = sorted(len(ids(tok, render_prompt(r["prompt"], tok))) for r in records)
    completions = sorted(len(ids(tok, text + "<|im_end|>\n"))
                         for text in ("Sure!", "no", "19", "The answer is 19."))
    assert stats["prompt"] == {"min": prompts[0], "median": sum(prompts) / 2,
                               "p95": prompts[1], "max": prompts[1]}
    assert stats["completion"]["min"] == completions[0]
    assert stats["completion"]["max"] == completions[-1]
    assert stats["completion"]["median"] == (completions[1] + completions[2]) / 2


# ---------------------------------------------------------------- padding collators

def test_collate_sft_pads_right(tok):
    examples = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                {"input_ids": [8], "labels": [8]}]
    batch = collate_sft(examples, pad_id=3)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_collate_preference_layout():
    examples = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5, 6],
                 "margin": 1.0},
                {"prompt_ids": [7], "chosen_ids": [8, 9], "rejected_ids": [10], "margin": 0.0}]
    batch = collate_preference(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0], [7, 8, 9, 0, 0],
                                           [1, 2, 4, 5, 6], [7, 10, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0],
                                                [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 0, 0], [0, 1, 1, 0, 0],
                                                 [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert batch["chosen_lengths"].tolist() == [1, 2]
    assert batch["rejected_lengths"].tolist() == [3, 1]
    assert batch["prompt_lengths"].tolist() == [2, 1]
    assert batch["margin"].tolist() == [1.0, 0.0]


def test_collate_unpaired_labels():
    examples = [{"prompt_ids": [1], "completion_ids": [2, 3], "label": True},
                {"prompt_ids": [4, 5], "completion_ids": [6], "label": False}]
    batch = collate_unpaired(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert batch["completion_mask"].tolist() == [[0, 1, 1], [0, 0, 1]]
    assert batch["labels"].dtype == torch.bool and batch["labels"].tolist() == [True, False]
    assert batch["completion_lengths"].tolist() == [2, 1]


# ---------------------------------------------------------------- packing

SFT_RECORDS = [
    {"prompt": QUESTION, "completion": "The answer is 19."},
    {"prompt": "How do I bake bread?", "completion": "Mix flour, water, yeast and salt."},
    {"prompt": "hi", "completion": "Sure! Here is a short poem about the sea."},
    {"prompt": "Please answer the question.", "completion": "I am sorry, I cannot help."},
    {"prompt": "goto(goal)", "completion": "toggle"},
]


def test_pack_sft_places_every_sequence_once_within_max_length(tok):
    examples = [encode_sft(r, tok) for r in SFT_RECORDS]
    max_length = max(len(e["input_ids"]) for e in examples) + 10
    rows = pack_sft(examples, max_length)
    assert len(rows) < len(examples)
    pieces = []
    for row in rows:
        assert len(row["input_ids"]) <= max_length
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for a, b in itertools.pairwise(starts):
            assert row["position_ids"][a:b] == list(range(b - a))
            pieces.append(tuple(row["input_ids"][a:b]))
    assert sorted(pieces) == sorted(tuple(e["input_ids"]) for e in examples)
    with pytest.raises(Exception, match="max_length"):
        pack_sft(examples, 5)


def _token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-target negative log-likelihoods, float64: -log softmax(logits[t-1])[labels[t]]."""
    logits, labels = logits[:, :-1].double(), labels[:, 1:]
    log_norm = torch.logsumexp(logits, dim=-1)
    target = torch.gather(logits, -1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (log_norm - target)[labels != -100]


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(len(tok), seed=0).eval()


def test_packed_loss_equals_unpacked_loss(tok, model):
    examples = [encode_sft(r, tok) for r in SFT_RECORDS]
    with torch.no_grad():
        alone = torch.cat([
            _token_nll(model(input_ids=torch.tensor([e["input_ids"]]), use_cache=False).logits,
                       torch.tensor([e["labels"]]))
            for e in examples])
        rows = pack_sft(examples, max_length=80)
        batch = collate_packed(rows, tok.pad_token_id)
        assert "attention_mask" not in batch
        packed = _token_nll(model(input_ids=batch["input_ids"],
                                  position_ids=batch["position_ids"], use_cache=False).logits,
                            batch["labels"])
    assert packed.numel() == alone.numel()
    assert abs(packed.sum().item() - alone.sum().item()) < 1e-5


def test_packed_sequences_cannot_see_each_other(tok, model):
    examples = [encode_sft(r, tok) for r in SFT_RECORDS[:2]]
    (row,) = pack_sft(examples, max_length=200)
    batch = collate_packed([row], tok.pad_token_id)
    second = row["position_ids"].index(0, 1)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits[0, second:]
        alone = model(input_ids=torch.tensor([row["input_ids"][second:]]),
                      use_cache=False).logits[0]
        # control: the same row read as one sequence lets the second part see the first
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0, second:]
    assert (packed - alone).abs().max().item() < 1e-5
    assert (leaky - alone).abs().max().item() > 1e-3


def test_collate_packed_pads_with_its_own_segment():
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "position_ids": [0, 1, 0]},
            {"input_ids": [4], "labels": [-100], "position_ids": [0]}]
    batch = collate_packed(rows, pad_id=9)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]


# ---------------------------------------------------------------- length bucketing

def test_length_grouped_batches_are_deterministic_complete_and_tight():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 500, (1000,), generator=generator).tolist()
    batches = length_grouped_batches(lengths, batch_size=8, seed=3)
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=3)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=4)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert all(len(batch) <= 8 for batch in batches)

    def padding(batch_list):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                   for b in batch_list)

    order = torch.randperm(1000, generator=generator).tolist()
    random_batches = [order[i:i + 8] for i in range(0, 1000, 8)]
    assert padding(batches) < 0.2 * padding(random_batches)


def test_length_grouped_batches_without_shuffle_sorts_by_length():
    lengths = [3, 9, 1, 7, 5]
    assert length_grouped_batches(lengths, batch_size=2, seed=0, shuffle=False) == [
        [1, 3], [4, 0], [2]]
