"""Does a causal LM already know the built-in two-digit arithmetic?

Usage: python scripts/probe_arithmetic_logprobs.py [--model embedded] [--n 150] [--chat]

For ``n`` problems of the task's test split, the model's log-likelihood of the
correct answer ``log p(y* | x)`` is compared with that of each plausible wrong
number of ``prefalign.tasks.arithmetic.wrong_answer`` (±1, ±10, the other
operation), each reply followed by the end-of-text token. Prints the share of
problems where the correct answer wins per kind of wrong number (chance 0.5)
and where it beats all five (chance 1/6). A model at chance here does not
compute the answer; a reward model on top of it has to learn the arithmetic
from the pairs.
"""

from __future__ import annotations

import argparse

import torch

from prefalign.models.load import load_model
from prefalign.tasks import arithmetic

SLIPS = {"+1": 1, "-1": -1, "+10": 10, "-10": -10}


def reply_logprob(model, tokenizer, prompt: str, reply: str, chat: bool) -> float:
    """``Σ_t log p(reply_t | prompt, reply_<t)`` with the reply closed by the end token."""
    if chat:
        prefix = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                               tokenize=False, add_generation_prompt=True)
    else:
        prefix = prompt + " "
    prefix_ids = tokenizer(prefix, add_special_tokens=False).input_ids
    reply_ids = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False).input_ids
    ids = torch.tensor([prefix_ids + reply_ids])
    with torch.no_grad():
        logprobs = model(ids).logits[0, :-1].float().log_softmax(-1)
    token_logprobs = logprobs.gather(-1, ids[0, 1:, None])[:, 0]
    return token_logprobs[len(prefix_ids) - 1:].sum().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="model name, path or adapter dir")
    parser.add_argument("--n", type=int, default=150, help="test-split problems to probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat", action="store_true", help="render prompts with the chat template")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, dtype="float32", device="cpu")
    model.eval()
    wins = {kind: 0 for kind in (*SLIPS, "other op")}
    beats_all = 0
    problems = arithmetic.problems(args.n, args.seed, split="test")
    for problem in problems:
        a, op, b, right = problem["a"], problem["op"], problem["b"], problem["answer"]
        wrong = {kind: right + delta for kind, delta in SLIPS.items()}
        wrong["other op"] = a - b if op == "+" else a + b
        score = lambda number: reply_logprob(model, tokenizer, problem["prompt"], str(number),
                                             args.chat)
        correct = score(right)
        margins = {kind: correct - score(number) for kind, number in wrong.items()}
        for kind, margin in margins.items():
            wins[kind] += margin > 0
        beats_all += min(margins.values()) > 0
    print(f"{args.model} ({'chat template' if args.chat else 'plain'}), {len(problems)} "
          "test problems: the correct answer is more likely than")
    for kind, won in wins.items():
        print(f"  {kind:>8}: {won / len(problems):.3f}")
    print(f"  all five: {beats_all / len(problems):.3f} (chance {1 / 6:.3f})")


if __name__ == "__main__":
    main()
