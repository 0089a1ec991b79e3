"""The data layer: from files to batches.

``load`` reads files and ``hf:`` datasets into numbered rows; ``schema``
validates them into normalised records of one kind (sft, preference, unpaired,
prompt, rated); ``split`` makes deterministic, leakage-free splits; ``convert``
turns raw shapes (hh-rlhf) into records; ``tokenize`` renders records with the
chat template and masks prompt tokens; ``collate`` pads, packs and buckets.
"""

from prefalign.data.collate import (
    collate_packed,
    collate_preference,
    collate_sft,
    collate_unpaired,
    length_grouped_batches,
    pack_sft,
)
from prefalign.data.convert import ConversionCounts, convert_file, hh_to_preference
from prefalign.data.load import (
    dataset_fingerprint,
    load_records,
    read_rows,
    write_jsonl,
)
from prefalign.data.schema import (
    RECORD_KINDS,
    UnusableRecord,
    validate_record,
    validate_records,
)
from prefalign.data.split import check_leakage, parse_fractions, split_records
from prefalign.data.tokenize import (
    SkipReport,
    encode_dataset,
    encode_preference,
    encode_sft,
    encode_unpaired,
    render_completion,
    render_prompt,
    token_length_stats,
)

__all__ = [
    "RECORD_KINDS",
    "ConversionCounts",
    "SkipReport",
    "UnusableRecord",
    "check_leakage",
    "collate_packed",
    "collate_preference",
    "collate_sft",
    "collate_unpaired",
    "convert_file",
    "dataset_fingerprint",
    "encode_dataset",
    "encode_preference",
    "encode_sft",
    "encode_unpaired",
    "hh_to_preference",
    "length_grouped_batches",
    "load_records",
    "pack_sft",
    "parse_fractions",
    "read_rows",
    "render_completion",
    "render_prompt",
    "split_records",
    "token_length_stats",
    "validate_record",
    "validate_records",
    "write_jsonl",
]
