"""Dense per-step rewards from a process reward model, for GRPO (``policy.process_reward``).

Each sampled completion is split into steps (its non-empty lines before a
``####`` line, as ``prefalign.eval.prm.solution_steps`` splits them); the step reward model
(``prefalign rm objective=process``) gives every step a probability of being
sound, and each step is located in the completion's tokens: step ``k`` ends at
the token holding its last character, and the last step extends to the final
token so the answer line is credited too. GRPO then turns these into
per-token advantages (``prefalign.losses.process.process_advantages``).
"""

from __future__ import annotations

from collections.abc import Sequence

from prefalign.rewards.step_model import StepRewardModel
from prefalign.rollout.types import Completion


def step_spans(text: str) -> list[tuple[str, int]]:
    """``(step, index of its last character in text)`` for each step of ``text``."""
    body = text.split("####", 1)[0]
    spans, offset = [], 0
    for line in body.split("\n"):
        stripped = line.strip()
        if stripped:
            spans.append((stripped, offset + len(line.rstrip()) - 1))
        offset += len(line) + 1
    return spans


def token_of_characters(tokenizer, token_ids: Sequence[int], positions: Sequence[int]
                        ) -> list[int]:
    """For each character position of the decoded text, the index of the token holding it
    (the first token whose decoded prefix extends past it)."""
    lengths = [len(tokenizer.decode(token_ids[:t + 1], skip_special_tokens=True))
               for t in range(len(token_ids))]
    found, t = [], 0
    for position in positions:
        while t < len(lengths) - 1 and lengths[t] <= position:
            t += 1
        found.append(t)
    return found


class ProcessRewardScorer:
    """Step rewards and their token ends for a rollout's completions."""

    def __init__(self, path: str, tokenizer, batch_size: int = 16):
        self.model = StepRewardModel.load(path, batch_size)
        self.tokenizer = tokenizer

    def __call__(self, prompts: Sequence, completions: Sequence[Completion]
                 ) -> tuple[list[list[float]], list[list[int]]]:
        """``(step rewards, step end tokens)`` per completion."""
        steps, ends = [], []
        for completion in completions:
            spans = step_spans(completion.text) or [(completion.text.strip() or "(empty)",
                                                     max(len(completion.text) - 1, 0))]
            tokens = token_of_characters(self.tokenizer, completion.token_ids,
                                         [end for _, end in spans])
            steps.append([step for step, _ in spans])
            ends.append(tokens)
        probabilities = self.model.step_probabilities(prompts, steps)
        # a solution longer than the model reads keeps the steps that fit; the last scored
        # step runs to the final token
        ends = [e[:len(p)] for e, p in zip(ends, probabilities)]
        for end, completion in zip(ends, completions):
            end[-1] = len(completion.token_ids) - 1
        return [p.tolist() for p in probabilities], ends
