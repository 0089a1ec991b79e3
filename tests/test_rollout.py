"""Rollout engine and training forward: completions end where they should, the grouped
layout is right, and the training forward's log-probs are those of the sampled tokens."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GenerationConfig

from prefalign.models.load import load_model
from prefalign.models.lora import LoraSettings
from prefalign.rollout import SamplingSettings, TransformersEngine, finish_completion, pack_groups
from prefalign.stages.online.model import PolicyModel


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    lm, tok = load_model(str(tiny_model_dir))
    return lm.eval(), tok


def prompt_ids(tok, texts):
    return [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                    tokenize=True, return_dict=False) for t in texts]


def test_finish_completion_cuts_at_eos_stop_string_or_length(tiny):
    _, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    body = tok("The answer</answer> and more", add_special_tokens=False)["input_ids"]
    done = finish_completion(body + [eos, pad, pad], tok, [eos])
    assert done.finish == "eos" and done.token_ids == body + [eos]
    stopped = finish_completion(body + [eos], tok, [eos], stop=("</answer>",))
    assert stopped.finish == "stop" and stopped.text == "The answer</answer>"
    cut = stopped.token_ids
    assert cut == body[:len(cut)]
    assert "</answer>" in tok.decode(cut) and "</answer>" not in tok.decode(cut[:-1])
    plain = finish_completion(body, tok, [eos], stop=("never",))
    assert plain.finish == "length" and plain.token_ids == body


def test_pack_groups_left_pads_prompts_and_right_pads_completions():
    batch = pack_groups([[1, 2, 3], [4]], [[5], [6, 7], [8, 9, 10], [11]], pad_id=0)
    assert batch["prompt_ids"].tolist() == [[1, 2, 3], [0, 0, 4]]
    assert batch["prompt_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["completion_ids"].tolist() == [[5, 0, 0], [6, 7, 0], [8, 9, 10], [11, 0, 0]]
    assert batch["completion_mask"].sum(-1).tolist() == [1, 2, 3, 1]
    assert batch["completion_lengths"].tolist() == [1, 2, 3, 1]
    with pytest.raises(ValueError, match="equal groups"):
        pack_groups([[1], [2]], [[3], [4], [5]], pad_id=0)


def test_engine_samples_n_per_prompt_deterministically_and_matches_plain_generate(tiny):
    lm, tok = tiny
    ids = prompt_ids(tok, ["What is 12 + 7?", "goto(yellow key)"])
    engine = TransformersEngine(lm, tok)
    settings = SamplingSettings(num_samples=3, max_new_tokens=6, temperature=1.0)
    first = engine.generate(ids, settings, seed=5)
    assert [len(group) for group in first] == [3, 3]
    assert all(1 <= len(c.token_ids) <= 6 for group in first for c in group)
    again = engine.generate(ids, settings, seed=5)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in again]
    # The prefix-shared sampling draws exactly what plain generate draws from one forward
    # over each prompt repeated three times, with the same seed.
    width = max(map(len, ids))
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = (torch.arange(width) >= torch.tensor([width - len(i) for i in ids])[:, None]).long()
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.0, top_k=0,
                              top_p=1.0, pad_token_id=tok.pad_token_id,
                              eos_token_id=[tok.eos_token_id])
    with torch.random.fork_rng():
        torch.manual_seed(5)
        plain = lm.generate(input_ids=input_ids.repeat_interleave(3, 0),
                            attention_mask=mask.repeat_interleave(3, 0), generation_config=config)
    for row, completion in enumerate(c for g in first for c in g):
        expected = plain[row, width:].tolist()
        assert expected[:len(completion.token_ids)] == completion.token_ids


def test_greedy_repeats_one_completion_and_stop_strings_end_it(tiny):
    lm, tok = tiny
    ids = prompt_ids(tok, ["Hi there, tell me about the sea."])
    engine = TransformersEngine(lm, tok)
    greedy = engine.generate(ids, SamplingSettings(num_samples=2, max_new_tokens=8,
                                                   temperature=0.0), seed=0)[0]
    assert greedy[0].token_ids == greedy[1].token_ids
    text = greedy[0].text
    stop = text[2:4]
    assert stop and len(text) > 4
    cut = engine.generate(ids, SamplingSettings(1, 8, 0.0, stop=(stop,)), seed=0)[0][0]
    assert cut.finish == "stop"
    assert cut.text == text[:text.find(stop) + len(stop)]
    assert cut.token_ids == greedy[0].token_ids[:len(cut.token_ids)]


class EosLikely(torch.nn.Module):
    """An output head that adds +30 to the end-of-sequence logit: every sample ends at once."""

    def __init__(self, head, eos_id):
        super().__init__()
        self.head, self.eos_id = head, eos_id

    def forward(self, hidden):
        logits = self.head(hidden)
        logits[..., self.eos_id] += 30.0
        return logits


def test_min_new_tokens_bars_the_end_of_sequence_token_until_reached(tiny):
    lm, tok = tiny
    eager = copy.deepcopy(lm)
    eager.lm_head = EosLikely(eager.lm_head, tok.eos_token_id)
    ids = prompt_ids(tok, ["What is 12 + 7?", "Name a colour."])
    engine = TransformersEngine(eager, tok)
    free = engine.generate(ids, SamplingSettings(num_samples=2, max_new_tokens=8), seed=1)
    assert all(c.token_ids == [tok.eos_token_id] and c.finish == "eos"
               for g in free for c in g)
    held = engine.generate(ids, SamplingSettings(num_samples=2, max_new_tokens=8,
                                                 min_new_tokens=5), seed=1)
    for completion in (c for g in held for c in g):
        assert completion.finish == "eos" and len(completion.token_ids) == 6
        assert tok.eos_token_id not in completion.token_ids[:5]


def reference_logps(lm, prompt, completion, temperature):
    """log softmax(logits / τ) of each completion token, from one plain float64 forward."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = lm(input_ids=ids).logits[0].double() / temperature
    logp = torch.log_softmax(logits, -1)
    return [logp[len(prompt) + t - 1, token].item() for t, token in enumerate(completion)]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_policy_logps_are_those_of_the_sampled_tokens(tiny_model_dir, checkpointing):
    lm, tok = load_model(str(tiny_model_dir), lora=LoraSettings(r=4))
    for name, param in lm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2, generator=torch.Generator().manual_seed(1))
    if checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    prompts = prompt_ids(tok, ["What is 12 + 7?", "bread"])
    completions = [[40, 41, 42], [43], [44, 45], [46, 47, 48, 49]]
    batch = pack_groups(prompts, completions, tok.pad_token_id)
    policy = PolicyModel(lm, temperature=0.7, value_head=True).train()
    torch.nn.init.normal_(policy.value_head.weight, generator=torch.Generator().manual_seed(3))
    logps, values = policy(batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                           batch["completion_mask"])
    assert values is not None and values.shape == logps.shape
    for row, completion in enumerate(completions):
        want = reference_logps(lm, prompts[row // 2], completion, 0.7)
        got = logps[row, :len(completion)].double().tolist()
        assert got == pytest.approx(want, abs=2e-5)
        assert (logps[row, len(completion):] == 0).all()
        # V(state before token t) reads the hidden state of the last token before it.
        full = torch.tensor([prompts[row // 2] + completion])
        with torch.no_grad():
            hidden = lm.get_base_model().get_decoder()(input_ids=full).last_hidden_state[0]
            head = policy.value_head
            want_values = (hidden @ head.weight[0] + head.bias[0]).tolist()
        start = len(prompts[row // 2]) - 1
        assert values[row, :len(completion)].tolist() == pytest.approx(
            want_values[start:start + len(completion)], abs=1e-4)
    loss = logps.sum()
    grads = torch.autograd.grad(loss, [p for p in lm.parameters() if p.requires_grad])
    assert all(torch.isfinite(g).all() for g in grads)


def plain_logp_gradients(lm, prompts, completions, group):
    """Σ log p(completion tokens) and its LoRA gradients, one unpadded row at a time."""
    trainable = [p for p in lm.parameters() if p.requires_grad]
    total = 0.0
    for row, completion in enumerate(completions):
        prompt = prompts[row // group]
        logits = lm(input_ids=torch.tensor([prompt + completion])).logits[0]
        logp = torch.log_softmax(logits[len(prompt) - 1:-1], -1)
        total = total + logp.gather(-1, torch.tensor(completion)[:, None]).sum()
    return total, torch.autograd.grad(total, trainable)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_prefix_shared_forward_has_the_gradients_of_plain_rows(tiny_model_dir, checkpointing):
    lm, tok = load_model(str(tiny_model_dir), lora=LoraSettings(r=4))
    for name, param in lm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2, generator=torch.Generator().manual_seed(2))
    lm.train()
    prompts = prompt_ids(tok, ["What is 12 + 7?", "bread and butter please"])
    completions = [[40, 41, 42], [43], [44, 45], [46, 47, 48, 49]]
    want, want_grads = plain_logp_gradients(lm, prompts, completions, group=2)
    if checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = pack_groups(prompts, completions, tok.pad_token_id)
    policy = PolicyModel(lm).train()
    widths = []
    embed = lm.get_base_model().get_input_embeddings()
    hook = embed.register_forward_hook(lambda m, args, out: widths.append(tuple(args[0].shape)))
    got, _ = policy(batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                    batch["completion_mask"])
    hook.remove()
    # the prompt once per group, then the completions alone: prefix sharing in both modes
    assert widths == [tuple(batch["prompt_ids"].shape), tuple(batch["completion_ids"].shape)]
    got_grads = torch.autograd.grad(got.sum(), [p for p in lm.parameters() if p.requires_grad])
    assert got.sum().item() == pytest.approx(want.item(), abs=1e-4)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def bytes_kept_for_backward(run) -> int:
    """Bytes of the distinct tensors autograd keeps for backward while ``run()`` builds its
    graph (tensors a checkpointed region saves are not kept: it recomputes them)."""
    kept = {}

    def pack(tensor):
        kept[(tensor.untyped_storage().data_ptr(), tensor.dtype)] = (
            tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(kept.values())


def test_checkpointed_prefix_shared_forward_keeps_less_for_backward(tiny_model_dir):
    lm, tok = load_model(str(tiny_model_dir), lora=LoraSettings(r=4))
    prompts = prompt_ids(tok, ["What is 12 + 7?", "bread and butter please"])
    completions = [list(range(40, 40 + 96))] * 8
    batch = pack_groups(prompts, completions, tok.pad_token_id)
    policy = PolicyModel(lm).train()

    def forward():
        policy(batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
               batch["completion_mask"])[0].sum()

    plain = bytes_kept_for_backward(forward)
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = bytes_kept_for_backward(forward)
    assert checkpointed < 0.6 * plain
    layers = lm.get_base_model().get_decoder().layers
    assert all(layer.gradient_checkpointing and not layer._can_checkpoint_with_cache
               for layer in layers)  # the forward's temporary layer flags are restored
