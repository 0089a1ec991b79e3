"""A judge kind defined outside the package: registered, then used by `prefalign eval
judge` with no edit of prefalign."""

from __future__ import annotations

import json

import pytest
from tests.conftest import write_jsonl
from tests.test_judges import run_cli

from prefalign.judges import JudgeStats, build_judge, register_judge_kind
from prefalign.judges import base as judge_base


class ShortestWins:
    """Pointwise: the shorter response scores higher (score = −characters)."""

    required_fields: tuple[str, ...] = ()

    def __init__(self, argument: str):
        self.name = f"shortest:{argument}"
        self.stats = JudgeStats()

    def score(self, prompts, responses, records=None):
        self.stats.requests += len(responses)
        return [-float(len(r)) for r in responses]


@pytest.fixture
def isolated_kinds(monkeypatch):
    monkeypatch.setattr(judge_base, "JUDGE_KINDS", dict(judge_base.JUDGE_KINDS))


def test_a_registered_kind_runs_in_eval_judge(isolated_kinds, monkeypatch, capsys, tmp_path):
    register_judge_kind("shortest", lambda argument, **options: ShortestWins(argument))
    assert build_judge("shortest:chars").name == "shortest:chars"
    pairs = [{"prompt": f"q{i}", "chosen": "a" * (3 + i % 4), "rejected": "b" * 5}
             for i in range(20)]
    expected = sum((len(p["chosen"]) < 5) + 0.5 * (len(p["chosen"]) == 5) for p in pairs) / 20
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "judge", "--judge", "shortest:chars",
                           "--data", str(data), "--n", "20", "--out", str(tmp_path / "o"))
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "judge_eval.json").read_text())
    assert result["accuracy"]["value"] == pytest.approx(expected)
    assert result["stats"]["requests"] == 40


def test_a_kind_cannot_be_registered_twice(isolated_kinds):
    register_judge_kind("shortest", ShortestWins)
    with pytest.raises(ValueError, match="already registered"):
        register_judge_kind("shortest", lambda argument, **options: ShortestWins(argument))
