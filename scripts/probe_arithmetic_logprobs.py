"""Does a causal LM already know the built-in two-digit arithmetic?

Usage: python scripts/probe_arithmetic_logprobs.py [--model embedded] [--n 150] [--chat]

For ``n`` problems of the task's test split, the model's log-likelihood of the
correct answer ``log p(y* | x)`` is compared with that of each plausible wrong
number of ``prefalign.tasks.arithmetic.wrong_answer`` (±1, ±10, the other
operation), tokenised as training tokenises pairs and scored by the same batched
pass that computes DPO's reference log-probs. Prints the share of
problems where the correct answer wins per kind of wrong number (chance 0.5)
and where it beats all five (chance 1/6). A model at chance here does not
compute the answer; a reward model on top of it has to learn the arithmetic
from the pairs.
"""

from __future__ import annotations

import argparse

from prefalign.data.tokenize import encode_preference
from prefalign.models.load import load_model
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.reference import compute_reference_logps
from prefalign.tasks import arithmetic

SLIPS = {"+1": 1, "-1": -1, "+10": 10, "-10": -10}
KINDS = (*SLIPS, "other op")


def wrong_numbers(problem: dict) -> dict[str, int]:
    """Each plausible wrong number of ``arithmetic.wrong_answer``, by kind."""
    a, op, b, right = problem["a"], problem["op"], problem["b"], problem["answer"]
    wrong = {kind: right + delta for kind, delta in SLIPS.items()}
    wrong["other op"] = a - b if op == "+" else a + b
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="model name, path or adapter dir")
    parser.add_argument("--n", type=int, default=150, help="test-split problems to probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat", action="store_true", help="render prompts with the chat template")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, dtype="float32", device="cpu")
    problems = arithmetic.problems(args.n, args.seed, split="test")
    # One pair (right answer, wrong number) per problem and kind, tokenised as training does.
    examples = [encode_preference({"prompt": p["prompt"], "chosen": str(p["answer"]),
                                   "rejected": str(wrong_numbers(p)[kind])}, tokenizer,
                                  use_chat_template=args.chat)
                for p in problems for kind in KINDS]
    chosen, rejected, _ = compute_reference_logps(CompletionLogprobModel(model), examples,
                                                  tokenizer.pad_token_id, args.batch_size)
    wins = (chosen > rejected).view(len(problems), len(KINDS))
    print(f"{args.model} ({'chat template' if args.chat else 'plain'}), {len(problems)} "
          "test problems: the correct answer is more likely than")
    for column, kind in enumerate(KINDS):
        print(f"  {kind:>8}: {wins[:, column].float().mean().item():.3f}")
    print(f"  all five: {wins.all(dim=1).float().mean().item():.3f} (chance {1 / 6:.3f})")


if __name__ == "__main__":
    main()
