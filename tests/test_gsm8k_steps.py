"""GSM8K step labels: parsing, the step checker, perturbations with a known first wrong
step, the labelled records and the ``gsm8k_steps`` task."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest

from prefalign.errors import DataError
from prefalign.tasks import get_task, source_task
from prefalign.tasks.gsm8k import normalize_number
from prefalign.tasks.gsm8k_steps import (
    CRITICAL,
    PERTURBATIONS,
    build_process_records,
    check_steps,
    content_key,
    evaluate,
    first_wrong_step,
    parse_solution,
    reference_values,
    render_solution,
    step_labels,
)
from prefalign.tasks.gsm8k_steps.steps import parse_step

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
FINAL_CHANGES = {"wrong_result", "wrong_operand", "wrong_operation"}

HAND = [
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
     "clips in May. How many clips did Natalia sell altogether in April and May?",
     "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
     "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"),
    ("A farm has 37 cows and 53 sheep. Each cow eats 14 kg of hay a day and each sheep "
     "eats 3 kg. How many kilograms of hay does the farm need in a week?",
     "The cows eat 37 * 14 = <<37*14=518>>518 kg a day.\n"
     "The sheep eat 53 * 3 = <<53*3=159>>159 kg a day.\n"
     "Together they eat 518 + 159 = <<518+159=677>>677 kg a day.\n"
     "In a week they eat 677 * 7 = <<677*7=4739>>4,739 kg.\n#### 4,739"),
    ("Tom buys 3 shirts at $12.50 each and 2 hats at $8.25 each. He pays with a $100 bill. "
     "How much change does he get?",
     "The shirts cost 3 * $12.50 = $<<3*12.5=37.5>>37.50 and the hats cost 2 * $8.25 = "
     "$<<2*8.25=16.5>>16.50.\n"
     "In total he spends $37.50 + $16.50 = $<<37.5+16.5=54>>54.\n"
     "His change is $100 - $54 = $<<100-54=46>>46.\n#### 46"),
    ("A baker makes thirteen trays of 17 rolls and sells 129 rolls. The rest are shared "
     "equally among 4 shelters. How many rolls does each shelter get?",
     "The baker makes 13 * 17 = <<13*17=221>>221 rolls.\n"
     "After selling, 221 - 129 = <<221-129=92>>92 rolls are left.\n"
     "Each shelter gets 92 / 4 = <<92/4=23>>23 rolls.\n#### 23"),
]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@cache
def train_rows() -> list[dict]:
    file = SHARED / "train.jsonl"
    if not file.is_file():
        return []
    with file.open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(500), handle)]


def real_rows() -> list[dict]:
    rows = train_rows()
    if not rows:
        pytest.skip(f"no GSM8K data at {SHARED}")
    return rows


def checked_problems(rows: list[tuple[str, str]]) -> list[tuple[str, list, str]]:
    """``(question, steps, final)`` of each reference that has annotations and passes."""
    found = []
    for question, answer in rows:
        try:
            steps, final = parse_solution(answer)
        except DataError:
            continue
        if all(check_steps(question, steps)):
            found.append((question, steps, final))
    return found


def test_parse_reads_steps_annotations_and_final():
    steps, final = parse_solution(HAND[2][1])
    assert final == "46" and len(steps) == 3
    first = steps[0]
    assert (first.expression, first.result, first.stated) == ("2*8.25", Fraction(33, 2),
                                                             Fraction(33, 2))
    assert [a.expression for a in first.annotations] == ["3*12.5", "2*8.25"]
    assert steps[1].text == "In total he spends $37.50 + $16.50 = $<<37.5+16.5=54>>54."
    assert parse_step("no calculation here").expression is None


@pytest.mark.parametrize("question,answer", HAND)
def test_render_then_parse_roundtrips(question, answer):
    steps, final = parse_solution(answer)
    assert render_solution(steps, final) == answer
    assert parse_solution(render_solution(steps, final)) == (steps, final)


def test_roundtrip_on_real_solutions():
    for row in real_rows()[:200]:
        try:
            steps, final = parse_solution(row["answer"])
        except DataError:
            continue
        assert parse_solution(render_solution(steps, final)) == (steps, final)


@pytest.mark.parametrize("expression,value", [
    ("48/2", Fraction(24)), ("10/3", Fraction(10, 3)), ("0.1+0.2", Fraction(3, 10)),
    ("2**3", Fraction(8)), ("-(3+4)*2", Fraction(-14)), ("1,000*5%", Fraction(5000)),
    (".5*4", Fraction(2)), ("+3+3", Fraction(6)), ("2*(07+1)", Fraction(16)),
])
def test_evaluate_is_exact(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "a+1", "abs(-3)", "(1).real", "[1][0]",
    "1 if 1 else 2", "lambda: 1", "2**100", "2**0.5", "1/0", "7//2", "1e3", "0x10", "",
    "3 = 3", "'12'",
])
def test_evaluate_refuses_anything_but_arithmetic(expression):
    assert evaluate(expression) is None


def test_checker_rules():
    question = "A shop has 37 boxes of 14 pens and gets thirteen more boxes."
    sound = "There are 37*14 = <<37*14=518>>518 pens.\nThen 518/3 = <<518/3=172.67>>172.67"
    steps, _ = parse_solution(sound + "\n#### 1")
    assert check_steps(question, steps) == [True, True]  # 172.67 rounds 518/3
    cases = {
        "37*14 = <<37*14=519>>519": "result is not the value",
        "37*14 = <<37*14=518>>581": "stated number is not the result",
        "37*41 = <<37*41=1517>>1517": "41 is not grounded",
        "37*13 = <<37*13=481>>481": None,  # thirteen, in words, grounds 13
        "518*2 = <<518*2=1036>>1036": "518 is not computed yet",
    }
    for line, reason in cases.items():
        verdict = check_steps(question, [parse_step(line)])
        assert verdict == [reason is None], reason
    assert check_steps("forty-five apples", [parse_step("<<45*2=90>>90")]) == [True]
    assert check_steps(question, [parse_step("Nothing is computed here.")]) == [True]


def test_reference_values_rule_and_first_wrong_step():
    question, answer = HAND[1]
    steps, _ = parse_solution(answer)
    known = reference_values(question, steps)
    assert {Fraction(37), Fraction(518), Fraction(4739)} <= known
    other = [steps[0], parse_step("The sheep eat 53 + 3 = <<53+3=56>>56 kg a day.")]
    assert first_wrong_step(question, other) is None
    assert first_wrong_step(question, other, known) == 1


def test_checker_passes_nine_in_ten_real_references():
    rows = real_rows()
    annotated = [(r["question"], r["answer"]) for r in rows if "<<" in r["answer"]]
    passing = checked_problems(annotated)
    assert len(passing) / len(annotated) >= 0.9, f"{len(passing)} of {len(annotated)}"


def test_step_labels_mark_the_first_wrong_step_and_after():
    assert step_labels(4, None) == [1, 1, 1, 1]
    assert step_labels(4, 0) == [0, 0, 0, 0]
    assert step_labels(4, 2) == [1, 1, 0, 0]
    assert step_labels(0, None) == []


def perturbed(problems: list[tuple[str, list, str]], kind: str) -> list[tuple]:
    """``(question, reference steps, reference final, perturbed)`` for each that applies."""
    found = []
    for index, (question, steps, final) in enumerate(problems):
        result = PERTURBATIONS[kind](question, steps, final, random.Random(index))
        if result is not None:
            found.append((question, steps, final, result))
    return found


def assert_first_wrong_is_found(kind: str, outputs: list[tuple]) -> None:
    for question, steps, final, result in outputs:
        known = reference_values(question, steps)
        assert result.kind == kind
        assert first_wrong_step(question, result.steps, known) == result.first_wrong, (
            kind, [s.text for s in result.steps])
        changed = normalize_number(result.final) != normalize_number(final)
        if kind in CRITICAL:
            assert not changed and result.final_correct
            assert not all(check_steps(question, result.steps, known))
        else:
            assert changed == (kind in FINAL_CHANGES) and result.final_correct == (not changed)


@pytest.mark.parametrize("kind", list(PERTURBATIONS))
def test_perturbations_of_hand_solutions(kind):
    outputs = perturbed(checked_problems(HAND), kind)
    assert outputs, f"{kind} applies to none of the hand-written solutions"
    assert_first_wrong_is_found(kind, outputs)


@pytest.mark.parametrize("kind", list(PERTURBATIONS))
def test_perturbations_of_real_solutions(kind):
    problems = checked_problems([(r["question"], r["answer"]) for r in real_rows()[:300]])
    outputs = perturbed(problems, kind)
    assert len(outputs) >= 50, f"{kind}: {len(outputs)} of {len(problems)}"
    assert_first_wrong_is_found(kind, outputs)


def test_critical_kinds_keep_the_gold_answer_with_a_wrong_step():
    assert set(CRITICAL) == {"compensating_errors", "unpropagated_slip"}
    question, answer = HAND[1]
    steps, final = parse_solution(answer)
    known = reference_values(question, steps)
    for kind, make in CRITICAL.items():
        result = make(question, steps, final, random.Random(0))
        assert normalize_number(result.final) == Fraction(4739)
        verdicts = check_steps(question, result.steps, known)
        assert verdicts[result.first_wrong] is False and all(verdicts[:result.first_wrong]), kind


def test_process_records_label_what_the_checker_finds(tmp_path):
    rows = [{"question": q, "answer": a} for q, a in HAND]
    rows.insert(1, {"question": "Solve for x.", "answer": "x + 2 = 5, so x = 3\n#### 3"})
    file = write_rows(tmp_path / "train.jsonl", rows)
    records = build_process_records(tmp_path, "train", n_problems=None, seed=3)
    assert records == build_process_records(file, n_problems=None, seed=3)
    assert {r["problem"] for r in records} == {0, 2, 3, 4}  # the prose-only row is skipped
    references = {r["problem"]: r for r in records if r["kind"] == "reference"}
    for record in records:
        question = record["prompt"]
        reference = [parse_step(text) for text in references[record["problem"]]["steps"]]
        steps = [parse_step(text) for text in record["steps"]]
        found = first_wrong_step(question, steps, reference_values(question, reference))
        assert record["labels"] == step_labels(len(steps), found)
        assert record["answer"] == extract_gold(rows[record["problem"]]["answer"])
        assert record["final_correct"] == (
            normalize_number(record["final"]) == normalize_number(record["answer"]))
    assert {r["kind"] for r in records} == {"reference", *PERTURBATIONS}
    # n_problems counts usable problems: the prose-only row 1 is passed over
    only = build_process_records(file, n_problems=2, seed=3, kinds=["unpropagated_slip"])
    assert {(r["problem"], r["kind"]) for r in only} == {
        (0, "reference"), (0, "unpropagated_slip"), (2, "reference"), (2, "unpropagated_slip")}
    assert all(r["critical"] == (r["kind"] == "unpropagated_slip") for r in only)


def extract_gold(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


@pytest.mark.parametrize("row,field", [
    ({"question": "How many?", "answer": "2+2 = <<2+2=4>>4"}, "answer"),
    ({"question": "How many?", "answer": "#### 4"}, "answer"),
    ({"question": "How many?"}, "answer"),
    ({"answer": "2+2 = <<2+2=4>>4\n#### 4"}, "question"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, field):
    good = {"question": "How many?", "answer": "2+2 = <<2+2=4>>4\n#### 4"}
    file = write_rows(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError) as caught:
        build_process_records(file, n_problems=None)
    assert f"{file}:2" in str(caught.value) and f"field '{field}'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_solution_refuses_missing_final_or_calculation():
    with pytest.raises(DataError, match="no final answer"):
        parse_solution("2+2 = <<2+2=4>>4")
    with pytest.raises(DataError, match="calculator annotation"):
        parse_solution("Two and two make four.\n#### 4")


def test_task_is_registered_and_gsm8k_folders_stay_gsm8k(tmp_path):
    task = get_task("gsm8k_steps")
    rows = [{"question": q, "answer": a} for q, a in HAND]
    write_rows(tmp_path / "train.jsonl", rows)
    assert source_task(str(tmp_path)).name == "gsm8k"
    records = task.makers["steps"](path=str(tmp_path), n=2, seed=0)
    assert {r["problem"] for r in records} == {0, 1}
    assert task.content_key(records[0]) == task.content_key({"prompt": "  " + HAND[0][0].upper()})
    verifier = task.verifier()
    assert verifier.score("So the answer is\n#### 72", records[0]) == 1.0


def test_train_and_test_step_records_are_content_disjoint_through_the_task_source():
    from prefalign.tasks import load_source

    if not (SHARED / "test.jsonl").is_file():
        pytest.skip("GSM8K is not in ../shared/data")
    test = load_source(f"gsm8k_steps:path={SHARED}&split=test&n=40", "steps")
    assert len({r["problem"] for r in test}) == 40
    assert all(len(r["labels"]) == len(r["steps"]) for r in test)
    assert any(r["critical"] for r in test)
    train_questions = {content_key({"prompt": json.loads(line)["question"]})
                       for line in (SHARED / "train.jsonl").open()}
    assert not {content_key(r) for r in test} & train_questions
