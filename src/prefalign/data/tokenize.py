"""Records to token ids: chat templates, prompt masking and truncation.

The prompt and the completion are rendered to text and tokenised *separately*
(``add_special_tokens=False``), so the boundary between them is exact:

* chat: ``prompt_text = template(prompt, add_generation_prompt=True)`` and
  ``completion_text = template(prompt + completion)[len(prompt_text):]``
  (the template must render the prompt as a prefix of the whole conversation);
* plain text (no template, or ``use_chat_template=False``): the prompt string,
  and the completion string followed by ``eos_token``.

Truncation: the prompt is first cut to ``max_prompt_length`` tokens, keeping its
last tokens (``keep_end``, the default: the question sits at the end) or its
first (``keep_start``); then the completion is cut to fit ``max_length`` in
total, keeping its start. A record that cannot train raises ``UnusableRecord``
with a reason; ``encode_dataset`` skips and counts those.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefalign.data.schema import REFERENCE_SAMPLE, UnusableRecord, check_kind
from prefalign.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
TRUNCATION_POLICIES = ("keep_end", "keep_start")
EMPTY_COMPLETION = "completion empty after truncation"
IDENTICAL_PAIR = "chosen identical to rejected"
COMPLETION_FIELDS = {"sft": ("completion",), "preference": ("chosen", "rejected"),
                     "unpaired": ("completion",), "rated": ("response",), "prompt": ()}

Conversation = str | list[dict]


def chat_template_applies(tokenizer: PreTrainedTokenizerBase, use_chat_template: bool) -> bool:
    """True when text is rendered through the tokenizer's chat template."""
    return bool(use_chat_template and getattr(tokenizer, "chat_template", None))


def _as_messages(value: Conversation, role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def _as_plain_text(value: Conversation, name: str) -> str:
    if isinstance(value, str):
        return value
    if len(value) == 1:
        return value[0]["content"]
    raise DataError(f"a conversation of {len(value)} messages needs a tokenizer with a chat "
                    "template (and use_chat_template enabled)", field=name)


def render_prompt(prompt: Conversation, tokenizer: PreTrainedTokenizerBase,
                  use_chat_template: bool = True) -> str:
    """The prompt as text, ending where the model's reply starts.

    With a chat template, a string prompt is wrapped as one user message and
    the template's generation prompt is appended; otherwise the plain string.
    """
    if chat_template_applies(tokenizer, use_chat_template):
        return tokenizer.apply_chat_template(_as_messages(prompt, "user"),
                                             add_generation_prompt=True, tokenize=False)
    return _as_plain_text(prompt, "prompt")


def render_completion(prompt: Conversation, completion: Conversation,
                      tokenizer: PreTrainedTokenizerBase, use_chat_template: bool = True,
                      prompt_text: str | None = None) -> str:
    """The completion as text: what the template adds after the rendered prompt.

    ``prompt_text`` is ``render_prompt(prompt, ...)``, passed in to avoid
    rendering it again.
    """
    if prompt_text is None:
        prompt_text = render_prompt(prompt, tokenizer, use_chat_template)
    if chat_template_applies(tokenizer, use_chat_template):
        messages = _as_messages(prompt, "user") + _as_messages(completion, "assistant")
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full.startswith(prompt_text):
            raise ConfigError("the tokenizer's chat template does not render the prompt as a "
                              "prefix of prompt + completion, so prompt tokens cannot be masked "
                              "exactly; use another template or use_chat_template=false")
        return full[len(prompt_text):]
    return _as_plain_text(completion, "completion") + (tokenizer.eos_token or "")


def _token_ids(text: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_pair(prompt: Conversation, completions: Sequence[Conversation],
                  tokenizer: PreTrainedTokenizerBase,
                  use_chat_template: bool = True) -> tuple[list[int], list[list[int]]]:
    """Token ids of the prompt and of each completion that may follow it (untruncated)."""
    prompt_text = render_prompt(prompt, tokenizer, use_chat_template)
    completion_ids = [
        _token_ids(render_completion(prompt, completion, tokenizer, use_chat_template,
                                     prompt_text), tokenizer)
        for completion in completions
    ]
    return _token_ids(prompt_text, tokenizer), completion_ids


def _check_lengths(max_length: int | None, max_prompt_length: int | None,
                   truncation: str) -> None:
    if truncation not in TRUNCATION_POLICIES:
        raise ConfigError(f"unknown truncation {truncation!r}; expected one of "
                          f"{', '.join(TRUNCATION_POLICIES)}")
    for name, value in (("max_length", max_length), ("max_prompt_length", max_prompt_length)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be a positive number of tokens, got {value}")


def truncate_prompt(prompt_ids: list[int], max_prompt_length: int | None,
                    truncation: str = "keep_end") -> list[int]:
    """Cut the prompt to ``max_prompt_length`` tokens, keeping its end or its start."""
    if max_prompt_length is None or len(prompt_ids) <= max_prompt_length:
        return prompt_ids
    if truncation == "keep_end":
        return prompt_ids[len(prompt_ids) - max_prompt_length:]
    return prompt_ids[:max_prompt_length]


def _fit_completion(completion_ids: list[int], prompt_length: int,
                    max_length: int | None) -> list[int]:
    if max_length is not None:
        completion_ids = completion_ids[:max(max_length - prompt_length, 0)]
    if not completion_ids:
        raise UnusableRecord(EMPTY_COMPLETION)
    return completion_ids


def _encode(prompt: Conversation, completions: Sequence[Conversation],
            tokenizer: PreTrainedTokenizerBase, max_length: int | None,
            max_prompt_length: int | None, truncation: str,
            use_chat_template: bool) -> tuple[list[int], list[list[int]]]:
    _check_lengths(max_length, max_prompt_length, truncation)
    prompt_ids, completion_ids = tokenize_pair(prompt, completions, tokenizer, use_chat_template)
    prompt_ids = truncate_prompt(prompt_ids, max_prompt_length, truncation)
    return prompt_ids, [_fit_completion(ids, len(prompt_ids), max_length)
                        for ids in completion_ids]


def encode_sft(record: dict, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None,
               max_prompt_length: int | None = None, truncation: str = "keep_end",
               use_chat_template: bool = True) -> dict[str, list[int]]:
    """``input_ids = prompt + completion``; ``labels`` are -100 on the prompt (loss on
    the completion only) and equal to ``input_ids`` on the completion."""
    prompt_ids, (completion_ids,) = _encode(record["prompt"], [record["completion"]], tokenizer,
                                            max_length, max_prompt_length, truncation,
                                            use_chat_template)
    return {"input_ids": prompt_ids + completion_ids,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids}


def encode_preference(record: dict, tokenizer: PreTrainedTokenizerBase,
                      max_length: int | None = None, max_prompt_length: int | None = None,
                      truncation: str = "keep_end", use_chat_template: bool = True,
                      reference_sample: bool = False) -> dict[str, Any]:
    """``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (+ ``margin`` when the record has one;
    + ``sample_ids``, the record's ``reference_sample``, with ``reference_sample=True``).

    ``max_length`` bounds ``prompt + chosen``, ``prompt + rejected`` (and ``prompt +
    sample``) each.
    """
    completions = [record["chosen"], record["rejected"]]
    if reference_sample:
        if record.get(REFERENCE_SAMPLE) is None:
            raise DataError("missing: the record needs a reply sampled from the reference "
                            "model", field=REFERENCE_SAMPLE)
        completions.append(record[REFERENCE_SAMPLE])
    prompt_ids, completion_ids = _encode(record["prompt"], completions, tokenizer, max_length,
                                         max_prompt_length, truncation, use_chat_template)
    if completion_ids[0] == completion_ids[1]:
        raise UnusableRecord(IDENTICAL_PAIR)
    example: dict[str, Any] = {"prompt_ids": prompt_ids, "chosen_ids": completion_ids[0],
                               "rejected_ids": completion_ids[1]}
    if reference_sample:
        example["sample_ids"] = completion_ids[2]
    if "margin" in record:
        example["margin"] = float(record["margin"])
    return example


def encode_unpaired(record: dict, tokenizer: PreTrainedTokenizerBase,
                    max_length: int | None = None, max_prompt_length: int | None = None,
                    truncation: str = "keep_end",
                    use_chat_template: bool = True) -> dict[str, Any]:
    """``prompt_ids``, ``completion_ids`` and the desirability ``label`` (bool)."""
    prompt_ids, (completion_ids,) = _encode(record["prompt"], [record["completion"]], tokenizer,
                                            max_length, max_prompt_length, truncation,
                                            use_chat_template)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids,
            "label": bool(record["label"])}


@dataclass
class SkipReport:
    """Records skipped while encoding a data set: a count and the first indices per reason."""

    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    first_indices: dict[str, list[int]] = field(default_factory=dict)
    max_indices: int = 5

    def add(self, reason: str, index: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        indices = self.first_indices.setdefault(reason, [])
        if len(indices) < self.max_indices:
            indices.append(index)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line, e.g. ``kept 98 of 100 records; skipped 2: chosen identical ...
        (records 4, 9)``."""
        line = f"kept {self.total - self.skipped} of {self.total} records"
        if self.counts:
            reasons = "; ".join(
                f"{reason}: {count} (records {', '.join(map(str, self.first_indices[reason]))}"
                f"{', ...' if count > len(self.first_indices[reason]) else ''})"
                for reason, count in self.counts.items())
            line += f"; skipped {self.skipped}: {reasons}"
        return line


def encode_dataset(records: Sequence[dict], encode_fn: Callable[..., dict],
                   **kwargs: Any) -> tuple[list[dict], SkipReport]:
    """Encode every record with ``encode_fn(record, **kwargs)``, skipping unusable ones.

    Returns the examples in record order, each with ``index`` (its 0-based
    position in ``records``), and a ``SkipReport``. An empty result is the
    caller's to refuse.
    """
    report = SkipReport(total=len(records))
    examples = []
    for index, record in enumerate(records):
        try:
            examples.append({**encode_fn(record, **kwargs), "index": index})
        except UnusableRecord as error:
            report.add(error.reason, index)
    return examples, report


def summarize_lengths(lengths: Sequence[int]) -> dict[str, float]:
    """``min``, ``median``, ``p95`` (nearest rank) and ``max`` of token lengths."""
    if not lengths:
        return {}
    ordered = sorted(lengths)
    rank = max(-(-95 * len(ordered) // 100), 1)
    return {"min": ordered[0], "median": statistics.median(ordered),
            "p95": ordered[rank - 1], "max": ordered[-1]}


def token_length_stats(records: Sequence[dict], kind: str, tokenizer: PreTrainedTokenizerBase,
                       use_chat_template: bool = True) -> dict[str, dict[str, float]]:
    """Length statistics, in tokens, of prompts and of completions (every completion
    field of the kind: chosen and rejected both count for preference records)."""
    fields = COMPLETION_FIELDS[check_kind(kind)]
    prompt_lengths, completion_lengths = [], []
    for record in records:
        completions = [record[name] for name in fields]
        prompt_ids, completion_ids = tokenize_pair(record["prompt"], completions, tokenizer,
                                                   use_chat_template)
        prompt_lengths.append(len(prompt_ids))
        completion_lengths.extend(len(ids) for ids in completion_ids)
    stats = {"prompt": summarize_lengths(prompt_lengths)}
    if completion_lengths:
        stats["completion"] = summarize_lengths(completion_lengths)
    return stats
