"""Language models as MiniGrid subgoal policies: greedy, and best-of-n reranked by a reward model.

``evaluate_policy`` (``prefalign.tasks.minigrid``) calls a policy with a batch of
prompts built by ``build_prompt`` and executes the returned subgoals. The
adapters here turn a causal LM into such a policy:

* the prompt is restyled as the model was trained (``restyle_prompt``: the
  domain's full instruction, or a one-line grammar reminder);
* a completion is read up to the end of its first line and stripped (trained
  completions are a space, the subgoal, then end of sequence);
* a policy is a deterministic function of the state text, so each distinct
  prompt is generated once and remembered: single-step states and the
  closed-loop states that coincide with them cost one generation.

Best-of-n draws n completions per state and returns the one the reward model
scores highest, ``argmax_i r(x, y_i)`` (ties: the earliest candidate), where r is
the ensemble's ``mean − λ·std`` when the reward model is an ensemble. With
``include_greedy`` (the default) the first candidate is the greedy completion
and the other n − 1 are sampled at a temperature, so the reranker moves away
from the greedy policy's choice only when the reward model prefers another
candidate; without it all n are sampled. With the grammar guard the reward
model ranks only the candidates that parse in the subgoal grammar; with the
grounded guard, only those that also refer to the state the prompt describes
(``prefalign.tasks.minigrid.grounding``: a listed object, a door not yet open,
``drop()`` only while carrying); when none qualifies, the first candidate is
returned. A reward model scores text it never saw, such as ``reach(goal)`` or a
``goto(goal)`` in a room without a goal, unreliably, and such text can never pass
the executor. Every state's candidates, scores and pick are kept (``audit``) for
the reward-hacking check. Sampling shares the prompt's forward pass among the
n samples (``sample_completions``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from prefalign.data.tokenize import render_prompt
from prefalign.errors import PrefalignError
from prefalign.eval.generate import generate
from prefalign.log import say
from prefalign.tasks.minigrid import INSTRUCTION
from prefalign.tasks.minigrid.grammar import parses
from prefalign.tasks.minigrid.grounding import grounded

COMPACT_INSTRUCTION = ("Reply with one subgoal: goto(colour type), goto(goal), "
                       "pickup(colour type), open(colour door) or drop().")
PROMPT_STYLES = ("compact", "full")
GUARDS = ("grounded", "grammar", "none")


def restyle_prompt(prompt: str, style: str) -> str:
    """``build_prompt``'s text with the full instruction (``full``) or the one-line
    reminder ``COMPACT_INSTRUCTION`` (``compact``) before the state."""
    if style not in PROMPT_STYLES:
        raise PrefalignError(f"unknown prompt style {style!r}; expected one of "
                             f"{', '.join(PROMPT_STYLES)}")
    if style == "full":
        return prompt
    head = INSTRUCTION + "\n"
    if not prompt.startswith(head):
        raise PrefalignError("the prompt does not start with the MiniGrid instruction; "
                             "build it with prefalign.tasks.minigrid.build_prompt")
    return COMPACT_INSTRUCTION + "\n" + prompt[len(head):]


def first_line(text: str) -> str:
    """The first line of a completion, stripped (the subgoal the model proposed)."""
    return text.strip().split("\n", 1)[0].strip()


class _Progress:
    """One line per generation batch: states done, cache hits, elapsed time, ETA."""

    def __init__(self, label: str, total: int, cached: int):
        self.label, self.total, self.cached = label, total, cached
        self.started = time.perf_counter()

    def update(self, done: int) -> None:
        elapsed = time.perf_counter() - self.started
        eta = elapsed / max(done, 1) * (self.total - done)
        say(self.label, f"generated {done}/{self.total} new states "
                        f"({self.cached} remembered) {elapsed:.0f}s, eta {eta:.0f}s")


@torch.no_grad()
def sample_completions(lm: torch.nn.Module, tokenizer, prompts: Sequence[Any], *, n: int,
                       temperature: float, max_new_tokens: int, batch_size: int = 16,
                       use_chat_template: bool = True,
                       generator: torch.Generator | None = None,
                       greedy_first: bool = False) -> list[list[str]]:
    """``n`` sampled completions per prompt, the prompt computed once for all ``n``.

    Per batch of B left-padded prompts ``[B, T]``: one forward pass fills the
    key/value cache, which is repeated n times along the batch (``[B·n, ...]``);
    then each step samples ``y_t ~ softmax(logits_t / temperature)`` for all
    B·n rows and feeds the tokens back with positions continuing each row's own
    count of real tokens. With ``greedy_first`` the first of each prompt's n rows
    decodes greedily instead, ``y_t = argmax logits_t`` (the greedy completion at
    no extra prompt cost). A row stops at the end-of-sequence token; decoding
    stops when every row has. Returns ``[len(prompts)][n]`` texts, special
    tokens removed.
    """
    was_training = lm.training
    lm.eval()
    device = next(lm.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    texts = [render_prompt(p, tokenizer, use_chat_template) for p in prompts]
    results: list[list[str]] = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            mask = enc["attention_mask"]
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = lm(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                     use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            cache.batch_repeat_interleave(n)
            logits = out.logits[:, -1].repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            position = positions[:, -1:].repeat_interleave(n, dim=0)
            finished = torch.zeros(mask.shape[0], dtype=torch.bool, device=device)
            greedy_rows = torch.zeros(mask.shape[0], dtype=torch.bool)
            greedy_rows[::n] = greedy_first
            steps: list[torch.Tensor] = []
            for _ in range(max_new_tokens):
                probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
                token = torch.where(greedy_rows, probs.argmax(-1), token)
                token = torch.where(finished, torch.full_like(token, pad), token.to(device))
                steps.append(token)
                finished |= token == eos
                if bool(finished.all()):
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
                position = position + 1
                logits = lm(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                            past_key_values=cache, use_cache=True).logits[:, -1]
            decoded = tokenizer.batch_decode(torch.stack(steps, dim=1), skip_special_tokens=True)
            results.extend(decoded[i:i + n] for i in range(0, len(decoded), n))
    finally:
        tokenizer.padding_side = side
        lm.train(was_training)
    return results


class GreedyPolicy:
    """A causal LM as a subgoal policy: greedy decoding, one generation per distinct state."""

    def __init__(self, lm: torch.nn.Module, tokenizer, *, prompt_style: str = "compact",
                 max_new_tokens: int = 12, batch_size: int = 32, use_chat_template: bool = False,
                 label: str = "eval"):
        self.lm, self.tokenizer = lm, tokenizer
        self.prompt_style, self.max_new_tokens = prompt_style, max_new_tokens
        self.batch_size, self.use_chat_template, self.label = batch_size, use_chat_template, label
        self.memory: dict[str, str] = {}
        self.calls, self.generated, self.seconds = 0, 0, 0.0

    def _decide(self, prompts: list[str], progress: _Progress) -> list[str]:
        outputs: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            texts = generate(self.lm, self.tokenizer, chunk, max_new_tokens=self.max_new_tokens,
                             batch_size=self.batch_size, use_chat_template=self.use_chat_template)
            outputs.extend(first_line(text) for text in texts)
            progress.update(len(outputs))
        return outputs

    def __call__(self, prompts: list[str]) -> list[str]:
        styled = [restyle_prompt(p, self.prompt_style) for p in prompts]
        self.calls += len(styled)
        new = list(dict.fromkeys(p for p in styled if p not in self.memory))
        if new:
            started = time.perf_counter()
            progress = _Progress(self.label, len(new), len(styled) - len(new))
            self.memory.update(zip(new, self._decide(new, progress)))
            self.generated += len(new)
            self.seconds += time.perf_counter() - started
        return [self.memory[p] for p in styled]

    def stats(self) -> dict[str, float]:
        """Prompts asked, distinct states generated, and generation time."""
        return {"prompts": self.calls, "generated": self.generated,
                "seconds": round(self.seconds, 1)}


class BestOfNPolicy(GreedyPolicy):
    """n candidates per state (the greedy one and n − 1 samples at ``temperature``, or n
    samples), the reward model's favourite returned."""

    def __init__(self, lm: torch.nn.Module, tokenizer, reward_model, *, n: int,
                 temperature: float, seed: int = 0, guard: str = "grammar",
                 include_greedy: bool = True, **kwargs):
        super().__init__(lm, tokenizer, **kwargs)
        if guard not in GUARDS:
            raise PrefalignError(f"unknown best-of-n guard {guard!r}; expected one of "
                                 f"{', '.join(GUARDS)}")
        self.reward_model, self.n, self.temperature = reward_model, n, temperature
        self.guard, self.include_greedy = guard, include_greedy
        self.audit: list[dict] = []
        self.generator = torch.Generator().manual_seed(seed)
        self.distinct_candidates = 0
        self.changed = 0  # states where the pick differs from the first candidate

    def _decide(self, prompts: list[str], progress: _Progress) -> list[str]:
        picks: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            samples = sample_completions(
                self.lm, self.tokenizer, chunk, n=self.n, temperature=self.temperature,
                max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                use_chat_template=self.use_chat_template, generator=self.generator,
                greedy_first=self.include_greedy)
            picks.extend(self._rerank(chunk, [[first_line(s) for s in row] for row in samples]))
            progress.update(len(picks))
        return picks

    def _admissible(self, text: str, prompt: str) -> bool:
        if not text:
            return False
        if self.guard == "none":
            return True
        if self.guard == "grounded":
            return grounded(text, prompt)
        return parses(text)

    def _rerank(self, prompts: list[str], candidates: list[list[str]]) -> list[str]:
        """The highest-scoring distinct admissible candidate of each prompt (empty texts
        never win; under the grammar guard, neither do unparseable ones). Every distinct
        non-empty candidate is scored, so that ``audit`` sees what an unguarded pick
        would have been."""
        distinct = [list(dict.fromkeys(c for c in row if c)) for row in candidates]
        pairs = [(p, c) for p, row in zip(prompts, distinct) for c in row]
        members = penalised = None
        if pairs:
            scored = self.reward_model.score_ensemble(
                [p for p, _ in pairs], [" " + c for _, c in pairs], batch_size=self.batch_size)
            members, penalised = scored.members, scored.penalised.tolist()
        picks, offset = [], 0
        for prompt, row, options in zip(prompts, candidates, distinct):
            row_scores = penalised[offset:offset + len(options)] if options else []
            row_members = members[:, offset:offset + len(options)] if options else None
            offset += len(options)
            allowed = [i for i, text in enumerate(options) if self._admissible(text, prompt)]
            self.distinct_candidates += len(allowed)
            if not allowed:
                picks.append(row[0])
                continue
            best = options[max(allowed, key=lambda i: (row_scores[i], -i))]
            self.changed += best != row[0]
            picks.append(best)
            self.audit.append({"prompt": prompt, "candidates": options,
                               "members": row_members.tolist(), "pick": best})
        return picks

    def stats(self) -> dict[str, float]:
        stats = super().stats()
        stats.update(n=self.n, temperature=self.temperature, guard=self.guard,
                     include_greedy=self.include_greedy,
                     mean_distinct_candidates=round(
                         self.distinct_candidates / max(self.generated, 1), 3),
                     reranked_states=self.changed)
        return stats
