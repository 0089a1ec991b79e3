"""Chunked per-token log-probs against the full float64 log-softmax."""

from __future__ import annotations

import pytest
import torch

from prefalign.models.tiny import tiny_model
from prefalign.ops.logprobs import completion_logprobs, selective_log_softmax, sequence_logps

VOCAB = 97


def reference_gather(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12),
                                       (torch.bfloat16, 1e-5), (torch.float16, 1e-5)])
@pytest.mark.parametrize("chunk_size", [1, 5, 1024])
def test_selective_log_softmax_values_and_gradients(dtype, tol, chunk_size):
    g = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(3, 7, VOCAB, generator=g)).to(dtype)
    index = torch.randint(0, VOCAB, (3, 7), generator=g)
    weights = torch.randn(3, 7, generator=g, dtype=torch.float64)

    leaf = logits.clone().requires_grad_()
    out = selective_log_softmax(leaf, index, chunk_size=chunk_size)
    assert out.shape == (3, 7)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    (out.double() * weights).sum().backward()

    # The reference sees exactly the same (rounded) logits, in float64.
    ref_leaf = logits.double().clone().requires_grad_()
    expected = reference_gather(ref_leaf, index)
    (expected * weights).sum().backward()

    torch.testing.assert_close(out.double(), expected.detach(), rtol=tol, atol=tol)
    assert leaf.grad.dtype == dtype
    grad_tol = tol if dtype in (torch.float32, torch.float64) else 1e-2
    torch.testing.assert_close(leaf.grad.double(), ref_leaf.grad, rtol=grad_tol, atol=grad_tol)


def test_selective_log_softmax_rejects_mismatched_index():
    with pytest.raises(ValueError, match="index"):
        selective_log_softmax(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def make_batch():
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB, (3, 12), generator=g)
    # prompt | completion | padding, of different lengths per row
    spans = [(4, 12), (2, 9), (6, 7)]
    completion_mask = torch.zeros(3, 12, dtype=torch.long)
    attention_mask = torch.zeros(3, 12, dtype=torch.long)
    for row, (start, end) in enumerate(spans):
        completion_mask[row, start:end] = 1
        attention_mask[row, :end] = 1
    return input_ids, attention_mask, completion_mask


def naive_per_token(model, input_ids, attention_mask, completion_mask, dtype):
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = model.lm_head(hidden).to(dtype)
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = log_probs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    per_token = torch.zeros(input_ids.shape, dtype=dtype)
    per_token[:, 1:] = picked
    return per_token * completion_mask


def parameter_grads(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()
            if p.grad is not None}


@pytest.mark.parametrize("chunk_size,recompute,head_as_weight", [
    (1024, False, False), (4, False, False), (3, True, False), (5, False, True)])
def test_completion_logprobs_matches_full_logits(chunk_size, recompute, head_as_weight):
    model = tiny_model(VOCAB, seed=0)
    input_ids, attention_mask, completion_mask = make_batch()
    seq_weights = torch.tensor([0.7, -1.3, 2.0])

    with torch.no_grad():
        reference = naive_per_token(model, input_ids, attention_mask, completion_mask,
                                    torch.float64)
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    head = model.lm_head.weight if head_as_weight else model.lm_head
    per_token = completion_logprobs(hidden, head, input_ids, completion_mask,
                                    chunk_size=chunk_size, recompute_logits=recompute)
    assert per_token.shape == (3, 12) and per_token.dtype == torch.float32
    assert (per_token[completion_mask == 0] == 0).all()
    torch.testing.assert_close(per_token.double(), reference, rtol=1e-5, atol=1e-5)
    (sequence_logps(per_token, completion_mask) * seq_weights).sum().backward()
    lean_grads = parameter_grads(model)

    model.zero_grad()
    naive = naive_per_token(model, input_ids, attention_mask, completion_mask, torch.float32)
    (sequence_logps(naive, completion_mask) * seq_weights).sum().backward()
    naive_grads = parameter_grads(model)

    assert lean_grads.keys() == naive_grads.keys() and len(lean_grads) > 0
    for name, grad in naive_grads.items():
        torch.testing.assert_close(lean_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_completion_logprobs_never_builds_full_logits():
    model = tiny_model(VOCAB, seed=0)
    input_ids, attention_mask, completion_mask = make_batch()
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    rows_seen = []
    handle = model.lm_head.register_forward_hook(
        lambda module, args, output: rows_seen.append(output.shape[0]))
    completion_logprobs(hidden, model.lm_head, input_ids, completion_mask, chunk_size=4)
    handle.remove()
    assert sum(rows_seen) == int(completion_mask.sum()) and max(rows_seen) <= 4


def test_completion_logprobs_rejects_first_position_and_bad_shapes():
    hidden = torch.zeros(1, 3, 8)
    head = torch.zeros(VOCAB, 8)
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="first position"):
        completion_logprobs(hidden, head, ids, torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        completion_logprobs(hidden, head, ids, torch.ones(1, 2))


def test_sequence_logps_sum_and_average():
    per_token = torch.tensor([[0.0, -1.0, -2.0, 99.0], [0.0, 0.0, -4.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 0]])
    torch.testing.assert_close(sequence_logps(per_token, mask), torch.tensor([-3.0, -4.0]))
    torch.testing.assert_close(sequence_logps(per_token, mask, average=True),
                               torch.tensor([-1.5, -4.0]))
    empty = sequence_logps(per_token, torch.zeros_like(mask), average=True)
    assert torch.equal(empty, torch.zeros(2))
