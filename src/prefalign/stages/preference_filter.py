"""``prefalign data filter-noisy``: drop the pairs a reference model disagrees with most."""

from __future__ import annotations

from prefalign.data.load import write_jsonl
from prefalign.data.tokenize import encode_dataset, encode_preference
from prefalign.errors import ConfigError
from prefalign.models.dropout import disable_dropout
from prefalign.models.load import load_model
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.stages.preference_algorithm import filter_noisy_pairs
from prefalign.stages.reference import reference_logps
from prefalign.tasks import load_source


def filter_noisy_file(source: str, destination: str, model: str, fraction: float, *,
                      max_length: int = 512, max_prompt_length: int = 384,
                      use_chat_template: bool = True, batch_size: int = 8) -> dict:
    """Write the pairs of ``source`` minus the ``fraction`` with the lowest reference margin.

    The margin ``log π_ref(chosen|x) − log π_ref(rejected|x)`` under ``model``
    measures how strongly the reference disagrees with the label; the pairs it
    disagrees with most are the likeliest to be mislabelled. Log-probs come
    from (and go to) the reference cache.
    """

    if not 0 <= fraction < 1:
        raise ConfigError(f"fraction must be in [0, 1), got {fraction}")
    records = load_source(source, "preference")
    lm, tokenizer = load_model(model)
    disable_dropout(lm)
    examples, skipped = encode_dataset(records, encode_preference, tokenizer=tokenizer,
                                       max_length=max_length,
                                       max_prompt_length=max_prompt_length,
                                       use_chat_template=use_chat_template)
    ref = reference_logps(CompletionLogprobModel(lm), examples, tokenizer.pad_token_id,
                          batch_size)
    kept, _ = filter_noisy_pairs(examples, ref, fraction)
    write_jsonl([records[e["index"]] for e in kept], destination)
    return {"read": len(records), "encoded": len(examples), "kept": len(kept),
            "dropped": len(examples) - len(kept), "skipped": skipped.counts}
