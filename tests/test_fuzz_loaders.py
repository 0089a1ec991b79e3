"""Property-based fuzzing of every loader and parser: any input gives a valid result or
one clear error line (a ``PrefalignError``), never another exception, never a hang.

Examples are bounded and derandomised (the same inputs on every run), so the suite's
time stays fixed; each call has a 5 s alarm, so a hang fails instead of stalling.
"""

from __future__ import annotations

import json
import signal
import string
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefalign.config import load_config
from prefalign.config.base import parse_overrides
from prefalign.config.preference import PreferenceConfig
from prefalign.data.convert import hh_to_preference, parse_hh_transcript
from prefalign.data.load import load_records, read_rows
from prefalign.data.schema import RECORD_KINDS, validate_record
from prefalign.errors import PrefalignError
from prefalign.tasks.countdown.expression import extract_answer, verify
from prefalign.tasks.gsm8k import extract_final_answer, load_gsm8k, normalize_number
from prefalign.tasks.minigrid.grammar import parse_subgoal

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECONDS = 5


@contextmanager
def time_limit(seconds: int = SECONDS):
    def stop(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def clean(function, *args, **kwargs):
    """``function(*args)``'s value, or None after a one-line ``PrefalignError``; any other
    exception (or a hang) fails the test with the input that caused it."""
    with time_limit():
        try:
            return function(*args, **kwargs)
        except PrefalignError as error:
            message = str(error)
            assert message.strip() and "\n" not in message.strip(), repr(message)
            return None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)
FIELDS = ("prompt", "completion", "chosen", "rejected", "messages", "label", "score", "response",
          "steps", "labels", "reference_sample", "role", "content")
MESSAGE = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "assistant", "system", "tool", "bot", ""]) | JSON,
    "content": st.text(max_size=20) | JSON})
ROW = st.dictionaries(st.sampled_from(FIELDS),
                      JSON | st.lists(MESSAGE, max_size=4) | st.text(max_size=30), max_size=6)


@FUZZ
@given(row=ROW | JSON, kind=st.sampled_from(RECORD_KINDS))
def test_any_row_is_a_record_or_one_error_line(row, kind):
    record = clean(validate_record, row, kind, "data.jsonl", 3)
    if record is not None:
        assert isinstance(record, dict)


def _write(suffix: str, content: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="prefalign-fuzz-"))
    path = folder / f"data{suffix}"
    path.write_bytes(content)
    return path


LINES = st.lists(ROW.map(json.dumps) | st.text(max_size=40), max_size=5).map("\n".join)


@FUZZ
@given(content=LINES.map(str.encode) | st.binary(max_size=200),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]),
       kind=st.sampled_from(RECORD_KINDS))
def test_any_file_loads_or_fails_with_one_line(content, suffix, kind):
    path = _write(suffix, content)
    clean(read_rows, path)
    records = clean(load_records, path, kind)
    assert records is None or isinstance(records, list)


TURN = st.sampled_from(["\n\nHuman:", "\n\nAssistant:", "Human:", "Assistant:", "\n\n", " "])
TRANSCRIPT = st.lists(TURN | st.text(max_size=15), max_size=8).map("".join)


@FUZZ
@given(chosen=TRANSCRIPT | JSON, rejected=TRANSCRIPT | JSON)
def test_hh_transcripts_convert_or_fail_cleanly(chosen, rejected):
    clean(parse_hh_transcript, chosen, "chosen", "raw.jsonl", 1)
    pair = clean(hh_to_preference, {"chosen": chosen, "rejected": rejected}, "raw.jsonl", 1)
    if pair is not None:
        assert validate_record(pair, "preference")["chosen"] == pair["chosen"]


GSM8K_ROW = st.fixed_dictionaries({}, optional={"question": st.text(max_size=30) | JSON,
                                                "answer": st.text(max_size=30) | JSON})


@FUZZ
@given(rows=st.lists(GSM8K_ROW | JSON, max_size=4), text=st.text(max_size=40))
def test_gsm8k_rows_and_answers(rows, text):
    folder = Path(tempfile.mkdtemp(prefix="prefalign-fuzz-"))
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    clean(load_gsm8k, folder, "train")
    clean(extract_final_answer, text)
    clean(normalize_number, text)


KEYS = st.sampled_from(["train.lr", "train.batch_size", "loss.name", "loss.beta", "data.train",
                        "model.lora.r", "model", "train", "loss", "nonsense.key", "train.bach",
                        "", ".", "a..b"])
VALUES = st.sampled_from(["1e-4", "-3", "0", "abc", "[1, 2]", "{x: 1}", "null", "true", "'",
                          "{", "]", "dpo", "ipo", "1e999", "nan"]) | st.text(max_size=12)


@FUZZ
@given(items=st.lists(st.tuples(KEYS, VALUES).map("=".join) | st.text(max_size=15),
                      max_size=4))
def test_config_overrides_load_or_fail_with_one_line(items):
    clean(parse_overrides, items)
    clean(load_config, PreferenceConfig, None, ["data.train=x.jsonl", *items])


EXPRESSION = st.text(alphabet=string.digits + "+-*/() .x^", max_size=60)


@FUZZ
@given(text=EXPRESSION | st.text(max_size=60),
       numbers=st.lists(st.integers(-5, 100), max_size=6), target=st.integers(-50, 1000))
def test_countdown_answers_parse_and_verify_without_raising(text, numbers, target):
    clean(extract_answer, f"<answer>{text}</answer>")
    result = clean(verify, text, numbers, target)
    assert result is not None  # verify reports malformed input, it never raises


@pytest.mark.parametrize("depth", [50, 500, 5000])
def test_deeply_nested_countdown_expressions_are_refused_not_crashed(depth):
    result = clean(verify, "(" * depth + "1" + ")" * depth, [1], 1)
    assert result is not None


SUBGOAL = st.lists(st.sampled_from(["go", "to", "pick", "up", "open", "the", "red", "blue",
                                    "door", "key", "ball", "box", "toggle", "drop", "(", ")",
                                    ",", " "]) | st.text(max_size=6), max_size=8).map(" ".join)


@FUZZ
@given(text=SUBGOAL | st.text(max_size=40))
def test_minigrid_subgoals_parse_or_fail_with_one_line(text):
    clean(parse_subgoal, text)


YAML_TEXT = st.lists(st.sampled_from(["train:", "  lr: 1e-4", "loss:", "  name: dpo", "data:",
                                      "  train: x.jsonl", "- a", "[", "{", ": :", "\t",
                                      "name: r", "cells:", "  grid:", "    loss.beta: [0.1]",
                                      "base: {stage: dpo}", "seeds: [0, 0]"])
                     | st.text(max_size=15), max_size=8).map("\n".join)


@FUZZ
@given(text=YAML_TEXT)
def test_config_and_sweep_files_load_or_fail_with_one_line(text):
    from prefalign.stages.online import load_online_config
    from prefalign.sweep import load_sweep

    path = _write(".yaml", text.encode())
    clean(load_config, PreferenceConfig, path, [])
    clean(load_sweep, path)
    clean(load_online_config, None, path, [])


@FUZZ
@given(lines=st.lists(ROW.map(json.dumps) | JSON.map(json.dumps) | st.text(max_size=30),
                      max_size=4))
def test_agent_task_files_load_or_fail_with_one_line(lines):
    from prefalign.agents.tasks import load_task_set

    path = _write(".tasks.jsonl", "\n".join(lines).encode())
    clean(load_task_set, "data", path.parent)


ARITHMETIC = st.text(alphabet=string.digits + "+-*/%() .^", max_size=40)


@FUZZ
@given(text=ARITHMETIC | st.text(max_size=40))
def test_the_calculator_tool_answers_every_expression_in_time(text):
    from prefalign.agents.protocol import parse_turn
    from prefalign.agents.tools import ToolContext, calculator

    answer = clean(calculator, ToolContext(), text)
    assert isinstance(answer, str) and answer
    clean(parse_turn, f"Thought: x\nAction: calculator[{text}]")
